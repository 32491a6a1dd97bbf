"""``DurableLedger``: an outbox in front of a ``Ledger``, so no transition is lost to an outage.

Every transition goes into a FIFO queue first (and, with a spool directory, into an
append-only JSON-lines file there, before anything else happens), then is written to the
inner ledger in order. When the inner ledger is unreachable (``LedgerUnavailable``), the
transition stays queued; a background task retries every ``retry_s`` seconds and writes the
queue in order once the database is back. While it is down, new transitions are only queued,
so a reconcile tick never waits on a dead database more than once.

Replays are idempotent: each entry carries the time it first happened (``now``), so the
inner ledger plans exactly the rows it planned the first time, and ``SqlLedger`` writes a row
it already has as nothing new (rollouts by key, phase changes by rollout, time and phases,
gate results upserted). A write that succeeded but whose answer was lost is thus harmless to
replay, and so is the whole spool after a crash.

Bounded: at ``max_pending`` queued transitions a new one is dropped, with an ERROR log and
``tensorgate_ledger_outbox_dropped_total{reason="full"}``. A transition the ledger rejects for
any other reason than being unreachable would fail forever: it is logged as an ERROR, counted
(``reason="rejected"``), kept in ``rejected.jsonl`` of the spool directory, and skipped, so it
never blocks the ones after it. ``tensorgate_ledger_outbox_pending`` is the queue's length.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from tensorgate.api.status import ModelDeploymentStatus
from tensorgate.errors import LedgerError
from tensorgate.ledger.base import Ledger, LedgerUnavailable, RolloutRecord, StatusLike

logger = logging.getLogger(__name__)

SPOOL_FILE = "outbox.jsonl"
REJECTED_FILE = "rejected.jsonl"
DEFAULT_MAX_PENDING = 10_000
DEFAULT_RETRY_S = 5.0


def _json(value: Any) -> Any:
    """A deep, JSON-safe copy (kopf's bodies are mappings of mappings)."""
    if isinstance(value, ModelDeploymentStatus):
        return value.to_dict()
    return json.loads(json.dumps(value, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (list, tuple, set)):
        return list(value)
    return str(value)


@dataclass(frozen=True)
class PendingTransition:
    """One transition waiting for the ledger, with the time it first happened."""

    namespace: str
    name: str
    old_status: dict[str, Any]
    new_status: dict[str, Any]
    spec: dict[str, Any]
    at: datetime

    @classmethod
    def of(
        cls,
        namespace: str,
        name: str,
        old_status: StatusLike,
        new_status: StatusLike,
        spec: Mapping[str, Any],
        at: datetime,
    ) -> PendingTransition:
        return cls(
            namespace,
            name,
            _json(old_status or {}),
            _json(new_status or {}),
            _json(spec),
            at,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "namespace": self.namespace,
                "name": self.name,
                "old": self.old_status,
                "new": self.new_status,
                "spec": self.spec,
                "at": self.at.isoformat(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> PendingTransition:
        data = json.loads(line)
        at = datetime.fromisoformat(data["at"])
        return cls(
            str(data["namespace"]),
            str(data["name"]),
            dict(data["old"]),
            dict(data["new"]),
            dict(data["spec"]),
            at if at.tzinfo else at.replace(tzinfo=UTC),
        )


@dataclass(frozen=True)
class OutboxMetrics:
    pending: Gauge
    dropped: Counter


_METRICS: dict[int, tuple[CollectorRegistry, OutboxMetrics]] = {}


def outbox_metrics(registry: CollectorRegistry) -> OutboxMetrics:
    """The outbox's metrics in ``registry`` (created once per registry, shared by ledgers)."""
    found = _METRICS.get(id(registry))
    if found is not None and found[0] is registry:
        return found[1]
    metrics = OutboxMetrics(
        pending=Gauge(
            "tensorgate_ledger_outbox_pending",
            "Transitions waiting in the ledger outbox for the database.",
            registry=registry,
        ),
        dropped=Counter(
            "tensorgate_ledger_outbox_dropped",
            "Transitions the ledger outbox could not keep (full) or the ledger rejected.",
            ["reason"],
            registry=registry,
        ),
    )
    _METRICS[id(registry)] = (registry, metrics)
    return metrics


class DurableLedger:
    """Implements ``Ledger``: ``inner`` behind an in-order, bounded, optionally spooled outbox.

    Build it with :meth:`open` (which replays a spool left by an earlier process).
    """

    def __init__(
        self,
        inner: Ledger,
        *,
        spool_dir: str | Path | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        retry_s: float = DEFAULT_RETRY_S,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_pending < 1:
            raise LedgerError(f"ledger outbox: max_pending must be >= 1 (got {max_pending})")
        self.inner = inner
        self.spool_dir = None if spool_dir is None else Path(spool_dir)
        self.max_pending = max_pending
        self.retry_s = retry_s
        self.metrics = outbox_metrics(registry if registry is not None else CollectorRegistry())
        self._clock = clock
        self._queue: deque[PendingTransition] = deque()
        self._flush_lock = asyncio.Lock()
        self._retrying: asyncio.Task[None] | None = None
        self._unavailable = False
        self.dropped = 0
        if self.spool_dir is not None:
            try:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LedgerError(
                    f"ledger spool directory {self.spool_dir}: {exc} "
                    "(set --ledger-spool-dir to a writable directory)"
                ) from exc

    @classmethod
    async def open(
        cls,
        inner: Ledger,
        *,
        spool_dir: str | Path | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        retry_s: float = DEFAULT_RETRY_S,
        registry: CollectorRegistry | None = None,
    ) -> DurableLedger:
        """The outbox, with what an earlier process left in ``spool_dir`` written (or queued)."""
        ledger = cls(
            inner, spool_dir=spool_dir, max_pending=max_pending, retry_s=retry_s, registry=registry
        )
        ledger._load_spool()
        if ledger._queue:
            logger.info("ledger outbox: replaying %s spooled transition(s)", len(ledger._queue))
            if not await ledger.flush():
                ledger._ensure_retrying()
        return ledger

    # -- the queue and its spool --------------------------------------------------------

    @property
    def pending(self) -> int:
        """Transitions not yet in the inner ledger."""
        return len(self._queue)

    def _spool(self, file: str) -> Path | None:
        return None if self.spool_dir is None else self.spool_dir / file

    def _load_spool(self) -> None:
        path = self._spool(SPOOL_FILE)
        if path is None or not path.exists():
            return
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = PendingTransition.from_json(line)
            except (ValueError, KeyError, TypeError) as exc:  # a torn last line after a crash
                logger.error("ledger outbox: %s line %s unreadable, skipped: %s", path, number, exc)
                continue
            self._queue.append(entry)
            self.metrics.pending.inc()

    def _append(self, file: str, line: str) -> None:
        path = self._spool(file)
        if path is None:
            return
        try:
            with path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:  # the transition stays in memory; a restart would lose it
            logger.error("ledger outbox: cannot write %s (kept in memory only): %s", path, exc)

    def _rewrite_spool(self) -> None:
        path = self._spool(SPOOL_FILE)
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                out.writelines(entry.to_json() + "\n" for entry in self._queue)
                out.flush()
                os.fsync(out.fileno())
            tmp.replace(path)
        except OSError as exc:  # a later replay of written entries is harmless (idempotent)
            logger.error("ledger outbox: cannot rewrite %s: %s", path, exc)

    def _enqueue(self, entry: PendingTransition) -> bool:
        if len(self._queue) >= self.max_pending:
            self.dropped += 1
            self.metrics.dropped.labels(reason="full").inc()
            logger.error(
                "ledger outbox FULL (%s transitions waiting for the database): transition of "
                "%s/%s to phase %s DROPPED; raise the outbox size or restore the database",
                len(self._queue),
                entry.namespace,
                entry.name,
                entry.new_status.get("phase"),
            )
            return False
        self._append(SPOOL_FILE, entry.to_json())
        self._queue.append(entry)
        self.metrics.pending.inc()
        return True

    # -- writing ------------------------------------------------------------------------

    async def flush(self) -> bool:
        """Write the queue in order until it is empty (True) or the ledger is unreachable."""
        async with self._flush_lock:
            written = False
            try:
                while self._queue:
                    head = self._queue[0]
                    try:
                        await self.inner.record_transition(
                            head.namespace,
                            head.name,
                            head.old_status,
                            head.new_status,
                            head.spec,
                            now=head.at,
                        )
                    except LedgerUnavailable as exc:
                        if not self._unavailable:
                            logger.warning(
                                "ledger unavailable; %s transition(s) kept in the outbox, "
                                "retried every %ss: %s",
                                len(self._queue),
                                self.retry_s,
                                exc,
                            )
                        self._unavailable = True
                        return False
                    except LedgerError as exc:
                        self._reject(head, exc)
                    self._queue.popleft()
                    self.metrics.pending.dec()
                    written = True
            finally:
                if written:
                    self._rewrite_spool()
            if self._unavailable:
                logger.info("ledger back: the outbox is written")
            self._unavailable = False
            return True

    def _reject(self, entry: PendingTransition, exc: LedgerError) -> None:
        self.dropped += 1
        self.metrics.dropped.labels(reason="rejected").inc()
        logger.error(
            "ledger rejected the transition of %s/%s to phase %s (skipped, kept in %s): %s",
            entry.namespace,
            entry.name,
            entry.new_status.get("phase"),
            self._spool(REJECTED_FILE) or "no spool directory",
            exc,
        )
        self._append(
            REJECTED_FILE,
            json.dumps({"error": str(exc), "transition": json.loads(entry.to_json())}),
        )

    def _ensure_retrying(self) -> None:
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry(), name="ledger-outbox-retry")

    async def _retry(self) -> None:
        while self._queue:
            await asyncio.sleep(self.retry_s)
            try:
                await self.flush()
            except Exception:  # e.g. the spool's disk is full: keep trying, loudly
                logger.exception("ledger outbox: flush failed, retrying in %ss", self.retry_s)

    # -- Ledger -------------------------------------------------------------------------

    async def record_transition(
        self,
        namespace: str,
        name: str,
        old_status: StatusLike,
        new_status: StatusLike,
        spec: Mapping[str, Any],
        *,
        now: datetime | None = None,
    ) -> None:
        """Queue the transition, then write the queue (unless the ledger is known down).

        Never raises for an unreachable ledger: the transition is kept and written later.
        """
        entry = PendingTransition.of(
            namespace, name, old_status, new_status, spec, now or self._clock()
        )
        if not self._enqueue(entry):
            return
        if not self._unavailable:
            await self.flush()
        if self._queue:
            self._ensure_retrying()

    async def history(self, namespace: str, name: str, limit: int = 20) -> list[RolloutRecord]:
        return await self.inner.history(namespace, name, limit)

    async def promoted_spec(self, namespace: str, name: str, version: str) -> dict[str, Any] | None:
        return await self.inner.promoted_spec(namespace, name, version)

    async def close(self) -> None:
        """Stop retrying, try the queue once more, keep what is left in the spool, close."""
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        if self._queue:
            await self.flush()
        if self._queue:
            if self.spool_dir is not None:
                logger.warning(
                    "ledger outbox: %s transition(s) stay in %s, written at the next start",
                    len(self._queue),
                    self._spool(SPOOL_FILE),
                )
            else:
                logger.error(
                    "ledger outbox: %s transition(s) LOST at shutdown (no --ledger-spool-dir)",
                    len(self._queue),
                )
        await self.inner.close()
