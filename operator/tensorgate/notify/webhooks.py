"""``HttpWebhookSender``: webhooks over HTTP with httpx.

Every call has the hook's ``timeout`` as a hard deadline per attempt and ``retries`` extra
attempts (after a connection error, a timeout, a 5xx or a 429; any other answer is final),
with a short exponential backoff. Three body formats:

- ``json``: the payload (``engine.hooks.hook_payload``) as ``application/json``;
- ``cloudevents``: a CloudEvents 1.0 event in HTTP **structured** mode (the whole event, its
  attributes and the payload as ``data``, in one ``application/cloudevents+json`` body), made
  with the ``cloudevents`` SDK; type ``dev.tensorgate.<hook type>``, source the resource's
  API path, subject its name;
- ``slack``: ``{"text": ...}`` for an incoming webhook, the text built from the payload.

``event`` hooks go through a bounded queue drained by one background task, so a slow or
dead receiver never slows a rollout. URLs are never logged (they often carry a token): only
the hook's name and host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent

from tensorgate.api.spec import GROUP, PLURAL, VERSION, Webhook, WebhookFormat, parse_duration_s
from tensorgate.api.status import HookResult
from tensorgate.notify.base import Payload
from tensorgate.redact import redact

logger = logging.getLogger(__name__)

__all__ = ["HttpWebhookSender", "encode", "host_of", "slack_text"]

QUEUE_SIZE = 1000
MAX_BACKOFF_S = 5.0
RETRIED_STATUSES = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = "tensorgate-webhooks"
EVENT_TYPE_PREFIX = "dev.tensorgate.rollout"
"""CloudEvents ``type``: ``dev.tensorgate.rollout.<hook type>`` (reverse DNS of the group)."""


def host_of(url: str) -> str:
    """``host[:port]`` of a hook's URL: what logs and messages name instead of the URL."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


class _HideHookUrls(logging.Filter):
    """httpx logs every request's full URL (at INFO); for a webhook that URL is a secret
    (Slack's token is its path): such a line names the host only."""

    LIMIT = 10_000

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def add(self, url: str) -> None:
        if len(self.urls) < self.LIMIT:
            self.urls.add(str(httpx.URL(url)))

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(str(a) in self.urls for a in args):
            record.args = tuple(
                f"<webhook at {host_of(str(a))}>" if str(a) in self.urls else a for a in args
            )
        return True


_HIDDEN = _HideHookUrls()
logging.getLogger("httpx").addFilter(_HIDDEN)


def slack_text(payload: Payload) -> str:
    """One Slack message line (mrkdwn) built from a payload."""
    where = f"{payload.get('namespace')}/{payload.get('name')}"
    text = (
        f"*{where}* {payload.get('phase')}: model {payload.get('model')} version "
        f"{payload.get('version')} (revision {payload.get('revision')}) at "
        f"{payload.get('weight')}% canary traffic"
    )
    if payload.get("message"):
        text += f": {payload['message']}"
    gate = payload.get("gate") or {}
    has_numbers = (
        gate.get("candidateAccuracy") is not None and gate.get("stableAccuracy") is not None
    )
    if has_numbers and "accuracy" not in text:
        text += (
            f"\naccuracy {gate['candidateAccuracy']:.4f} vs stable {gate['stableAccuracy']:.4f}"
            f", drop bound {gate.get('upperBound') or 0:.4f} (margin {gate.get('margin')}) "
            f"on {gate.get('n')} samples"
        )
    hook = payload.get("hook") or {}
    return f"{text}\n_{hook.get('type')} webhook {hook.get('name')}_"


def encode(hook: Webhook, payload: Payload) -> tuple[dict[str, str], bytes]:
    """Headers and body of a hook's request in its format."""
    if hook.format == WebhookFormat.CLOUDEVENTS:
        namespace, name = payload.get("namespace"), payload.get("name")
        event = CloudEvent(
            {
                "type": f"{EVENT_TYPE_PREFIX}.{hook.type}",
                "source": f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}",
                "subject": str(name),
                "datacontenttype": "application/json",
            },
            dict(payload),
        )
        message = to_structured_event(event)
        return dict(message.headers), message.body
    doc: dict[str, Any] = dict(payload)
    if hook.format == WebhookFormat.SLACK:
        doc = {"text": slack_text(payload)}
    return {"content-type": "application/json"}, json.dumps(doc, default=str).encode()


class HttpWebhookSender:
    """Implements ``notify.base.WebhookSender`` with httpx."""

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff_s: float = 0.5,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._transport = transport
        self._backoff_s = backoff_s
        self._queue_size = queue_size
        self._client: httpx.AsyncClient | None = None
        self._queue: asyncio.Queue[tuple[Webhook, Payload]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.dropped = 0

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                follow_redirects=False,
                headers={"user-agent": USER_AGENT},
            )
        return self._client

    async def _attempt(self, hook: Webhook, headers: dict[str, str], body: bytes) -> int:
        timeout_s = parse_duration_s(hook.timeout)
        _HIDDEN.add(hook.url)
        request = self._http().post(
            hook.url, content=body, headers=headers, timeout=httpx.Timeout(timeout_s)
        )
        response = await asyncio.wait_for(request, timeout=timeout_s)
        return response.status_code

    async def call(self, hook: Webhook, payload: Payload) -> HookResult:
        headers, body = encode(hook, payload)
        timeout_s = parse_duration_s(hook.timeout)
        host = host_of(hook.url)
        problem = ""
        code: int | None = None
        attempts = 0
        for attempt in range(hook.retries + 1):
            if attempt:
                await asyncio.sleep(min(self._backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
            attempts += 1
            try:
                code = await self._attempt(hook, headers, body)
            except (TimeoutError, httpx.TimeoutException):
                code, problem = None, f"no answer from {host} within {timeout_s:g}s"
                continue
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
                code, problem = None, f"cannot reach {host} ({kind})"
                continue
            if code not in RETRIED_STATUSES:
                break
        passed = code is not None and 200 <= code < 300
        if code is not None:
            problem = f"HTTP {code}"
        message = problem if attempts == 1 else f"{problem} after {attempts} attempts"
        if not passed:
            logger.info("webhook %s (%s, %s): %s", hook.name, hook.type, host, redact(message))
        return HookResult(
            name=hook.name, passed=passed, code=code, attempts=attempts, message=message
        )

    def post(self, hook: Webhook, payload: Payload) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain_queue())
        try:
            self._queue.put_nowait((hook, payload))
        except asyncio.QueueFull:
            self.dropped += 1
            logger.warning(
                "event webhook %s: queue full (%d), event dropped", hook.name, self._queue_size
            )

    async def _drain_queue(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            hook, payload = await queue.get()
            try:
                result = await self.call(hook, payload)
                if not result.passed:
                    logger.warning(
                        "event webhook %s (%s) failed: %s",
                        hook.name,
                        host_of(hook.url),
                        result.message,
                    )
            except Exception:  # a background sender never dies of one bad event
                logger.exception("event webhook %s: unexpected error", hook.name)
            finally:
                queue.task_done()

    async def drain(self, timeout_s: float) -> None:
        if self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=timeout_s)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._queue = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
