"""The webhook edge: one Protocol. A sender returns answers as data and never raises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tensorgate.api.spec import Webhook
from tensorgate.api.status import HookResult

Payload = Mapping[str, Any]


class WebhookSender(Protocol):
    """POSTs rollout payloads to ``analysis.webhooks``."""

    async def call(self, hook: Webhook, payload: Payload) -> HookResult:
        """POST ``payload`` and wait for the answer (the hook's timeout, bounded retries);
        a hook that cannot be reached is a result with ``passed=False``, not an error."""

    def post(self, hook: Webhook, payload: Payload) -> None:
        """Queue ``payload`` for an ``event`` hook and return at once (best effort: a full
        queue drops it with a warning)."""

    async def drain(self, timeout_s: float) -> None:
        """Wait, at most ``timeout_s``, until every queued post has been sent."""

    async def aclose(self) -> None:
        """Stop the background sender and close connections."""
