"""A scripted WebhookSender for fast tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tensorgate.api.spec import Webhook
from tensorgate.api.status import HookResult
from tensorgate.notify.base import Payload


@dataclass
class FakeWebhookSender:
    """Answers each hook from ``codes`` (name -> HTTP statuses, one per call, the last one
    repeated; 200 when not named) and records every call and post."""

    codes: Mapping[str, list[int]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def call(self, hook: Webhook, payload: Payload) -> HookResult:
        made = sum(1 for name, _ in self.calls if name == hook.name)
        self.calls.append((hook.name, dict(payload)))
        codes = self.codes.get(hook.name) or [200]
        code = codes[min(made, len(codes) - 1)]
        return HookResult(
            name=hook.name, passed=200 <= code < 300, code=code, message=f"HTTP {code}"
        )

    def post(self, hook: Webhook, payload: Payload) -> None:
        self.posts.append((hook.name, dict(payload)))

    async def drain(self, timeout_s: float) -> None:
        return None

    async def aclose(self) -> None:
        return None
