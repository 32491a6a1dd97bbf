"""kopf handlers: thin. One driver per object runs ``Reconciler.reconcile`` one decision at a
time and writes each decision's status before the next.

- ``drive`` (one asyncio task per ModelDeployment, started by its first watch event; no kopf
  daemon, since kopf's daemons need a finalizer): read the object, decide, execute, patch
  status with its ``resourceVersion`` (a conflict re-reads and decides again), post the Event,
  write the ledger and the gauges; then sleep what the engine asked (``requeue_s``), or until
  woken, or the resync interval for an idle object.
- ``wake`` (watch events of the object): a change of spec, metadata or someone else's status
  wakes the driver at once; a new command annotation also cancels a check in progress, so a
  command acts within moments whatever the rollout is doing.
- on deletion (no finalizer: the garbage collector removes the children), ``wake`` drops the
  object's gauges and its per-object state.

Registered into an explicit registry (no module globals), so tests can run several operators
in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from tensorgate.api.reasons import ConditionType, Reason
from tensorgate.api.spec import GROUP, PLURAL, VERSION
from tensorgate.api.status import ModelDeploymentStatus
from tensorgate.engine.conditions import ConditionChange, merge_conditions
from tensorgate.engine.rollout import Event
from tensorgate.errors import ConfigError, EdgeError, KubeAPIError, LedgerError
from tensorgate.ledger.sql import open_ledger
from tensorgate.observability import DEFAULT as DEFAULT_METRICS
from tensorgate.observability import observe_outcome, start_metrics_server
from tensorgate.platform.kubernetes.client import KubeClient, compact, object_path
from tensorgate.reconcile import Outcome, Reconciler, read_command
from tensorgate.settings import Settings

# kopf's own bookkeeping (diff base, progress) lives under a prefix of its own, so that every
# annotation of ours (tensorgate.dev/command) is a change kopf reports.
KOPF_PREFIX = f"kopf.{GROUP}"
EDGE_BACKOFF_S = (2.0, 5.0, 10.0, 30.0, 60.0)
INFORMER_SYNC_S = 10.0  # the longest a driver waits for the informers' first lists
WEBHOOK_DRAIN_S = 5.0


class ApiBackoffs:
    """kopf's request retries (``settings.networking.error_backoffs``), its watch included.
    kopf's default (8 waits, 54 s) ends the watch, and with it the operator, when the API
    server is away for a minute (a restart, an etcd outage); these wait 1, 1, 2, 3, 5 s and
    then every 10 s, up to about 11 minutes. Re-iterable: kopf iterates it once per request."""

    FIRST_S = (1.0, 1.0, 2.0, 3.0, 5.0)
    EVERY_S, THEN = 10.0, 64

    def __iter__(self) -> Iterator[float]:
        yield from self.FIRST_S
        yield from itertools.repeat(self.EVERY_S, self.THEN)


# What the API server answers for a write into a namespace being deleted.
TERMINATING = "because it is being terminated"


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


ReconcilerFactory = Callable[[KubeClient, Settings], Reconciler]


@dataclass
class ObjectState:
    """What the operator keeps per object between decisions (dropped on delete)."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    command: asyncio.Event = field(default_factory=asyncio.Event)
    written: str | None = None  # resourceVersion of the driver's own last status write
    # The newest body seen (a watch event, or the answer to our own status write): a decision
    # starts from it without a GET. A stale one costs a 409 and a GET, never a wrong write.
    body: dict[str, Any] | None = None
    edge_failures: int = 0
    driver: asyncio.Task[None] | None = None


@dataclass
class OperatorMemo:
    """What every handler receives as ``memo`` (kopf copies it per resource: share by ref)."""

    settings: Settings
    make_reconciler: ReconcilerFactory
    state: dict[str, Any] = field(default_factory=dict)

    def object(self, uid: str) -> ObjectState:
        objects: dict[str, ObjectState] = self.state.setdefault("objects", {})
        return objects.setdefault(uid, ObjectState())

    def forget(self, uid: str) -> None:
        objects: dict[str, ObjectState] = self.state.setdefault("objects", {})
        state = objects.pop(uid, None)
        if state is not None and state.driver is not None:
            state.driver.cancel()

    async def stop_drivers(self) -> None:
        objects: dict[str, ObjectState] = self.state.setdefault("objects", {})
        tasks = [s.driver for s in objects.values() if s.driver is not None]
        objects.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning ``old`` into ``new``. A merge patch merges nested
    objects, so a key removed at any depth must be sent as null: otherwise a previous
    rollout's ``gate.smokePassed`` would survive into the next rollout's gate."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = status_patch(before, value)
        else:
            patch[key] = value
    patch.update({k: None for k in old if k not in new})
    return patch


def kept_body(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a driver keeps of its object between decisions: all of it but the
    ``managedFields`` (no decision reads them; at 1,000 objects they were ~10 KiB each),
    its keys interned (shared by every object's copy)."""
    if obj is None:
        return None
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return compact({**obj, "metadata": meta})  # type: ignore[no-any-return]


# kopf's context variables of the event being handled (its cause: the whole body, the patch,
# the handler). A task copies the context it is created in, so a driver started by a handler
# would hold its first event's body for life (~12 KiB per object at 1,000 objects).
KOPF_EVENT_VARS = frozenset(
    {"cause_var", "handler_var", "subrefs_var", "sublifecycle_var", "subsettings_var"}
    | {"subregistry_var", "subexecuted_var"}
)


def driver_context() -> contextvars.Context:
    """The current context without kopf's per-event variables; the rest (kopf's Event
    queue and settings, which ``kopf.event`` and the object logger post through) stays."""
    context = contextvars.Context()
    for var, value in contextvars.copy_context().items():
        if var.name not in KOPF_EVENT_VARS:
            context.run(var.set, value)
    return context


def _post(body: Any, event: Event) -> None:
    kopf.event(
        body,
        type="Warning" if event.warning else "Normal",
        reason=str(event.reason),
        message=event.message[:1000],
    )


def _uid(meta: Any) -> str:
    return str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")


def _has_new_command(obj: Mapping[str, Any]) -> bool:
    command = read_command(obj.get("metadata") or {})
    if command is None:
        return False
    last = ((obj.get("status") or {}).get("lastCommand") or {}).get("id")
    return bool(last != command.id)


def is_newer(meta: Mapping[str, Any], body: Mapping[str, Any] | None) -> bool:
    """Whether an object with ``meta`` is newer than ``body`` (None: nothing known). Watch
    events come in order, but the answer to our own write can overtake an older event.
    resourceVersions are opaque; the API server's are integers, compared as such."""
    version = str(meta.get("resourceVersion") or "")
    if not version:
        return False
    known = str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")
    if not (version.isdigit() and known.isdigit()):
        return True
    return int(version) > int(known)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Register every handler of the operator into ``registry``."""
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=KOPF_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = memo.settings.request_timeout_s * 3
        settings.networking.error_backoffs = ApiBackoffs()
        # Restricted mode: no cluster-wide CRD/namespace scans, so RBAC stays minimal.
        settings.scanning.disabled = True
        ours: Settings = memo.settings
        if ours.metrics_port is not None and "metrics_server" not in memo.state:
            memo.state["metrics_server"] = start_metrics_server(
                ours.metrics_host, ours.metrics_port
            )
        if ours.ledger_dsn and "ledger" not in memo.state:
            memo.state["ledger"] = await open_ledger(
                ours.ledger_dsn,
                timeout_s=ours.request_timeout_s,
                retries=ours.retries,
                spool_dir=ours.ledger_spool_dir,
                registry=DEFAULT_METRICS.registry,
            )
        if memo.settings.peering is None:
            settings.peering.standalone = True
        else:
            settings.peering.name = memo.settings.peering
            settings.peering.mandatory = True
            settings.peering.clusterwide = not memo.settings.namespaces

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: Any, **_: Any) -> None:
        await memo.stop_drivers()
        reconciler = memo.state.get("reconciler")
        if reconciler is not None:  # queued event webhooks get a moment to go out
            await reconciler.webhooks.drain(WEBHOOK_DRAIN_S)
            await reconciler.webhooks.aclose()
        server = memo.state.pop("metrics_server", None)
        if server is not None:
            server.stop()
        ledger = memo.state.pop("ledger", None)
        if ledger is not None:
            await ledger.close()

    @kopf.on.login(registry=registry)
    def login(memo: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster ServiceAccount first, then the kubeconfig; tests may preset one."""
        info: kopf.ConnectionInfo | None = memo.state.get("connection")
        if info is None:
            info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        memo.state["connection"] = info
        return info

    @kopf.on.event(*resource, registry=registry, id="wake")
    async def wake(event: kopf.RawEvent, memo: Any, logger: Any, **_: Any) -> None:
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        uid = _uid(meta)
        if event.get("type") == "DELETED":
            # No finalizer: the garbage collector removes the children; we drop our state.
            DEFAULT_METRICS.forget(str(meta.get("namespace") or "default"), str(meta.get("name")))
            memo.forget(uid)
            return
        state: ObjectState = memo.object(uid)
        if is_newer(meta, state.body):
            state.body = kept_body(obj)
        if state.driver is None or state.driver.done():
            await ensure_reconciler(memo)
            path = object_path(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ModelDeployment",
                    "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
                }
            )
            state.driver = asyncio.create_task(
                drive(memo, state, path, logger), context=driver_context()
            )
            return
        if meta.get("resourceVersion") and meta.get("resourceVersion") == state.written:
            return  # the driver's own write: nothing new
        if _has_new_command(obj):
            state.command.set()
        state.wake.set()


async def drive(memo: Any, state: ObjectState, path: str, logger: Any) -> None:
    """The driver of one object: decide, write, sleep what the engine asked, or until woken
    (at most the resync interval). Never raises: errors back off and are retried."""
    resync_s = memo.settings.reconcile_interval_s
    # As a controller waits for its caches: at a restart, 1,000 drivers deciding before the
    # informers have listed would each read their children by GET, all at once.
    await memo.state["client"].informers_synced(INFORMER_SYNC_S)
    with contextlib.suppress(EdgeError):
        await recover_unrecorded(memo, state, path, logger)
    while True:
        state.wake.clear()
        try:
            requeue = await drive_once(memo, state, path, logger)
            state.edge_failures = 0
        except ConfigError as exc:  # not retried until the object changes
            logger.error("cannot reconcile: %s", exc)
            requeue = None
        except EdgeError as exc:
            if TERMINATING in str(exc):
                logger.info("namespace is being deleted: nothing to do until it is gone")
                requeue = None
            else:
                delay = EDGE_BACKOFF_S[min(state.edge_failures, len(EDGE_BACKOFF_S) - 1)]
                state.edge_failures += 1
                logger.warning("edge error, retrying in %.0fs: %s", delay, exc)
                await report_blocked(memo, path, exc, logger)
                requeue = delay
        except Exception:
            logger.exception("unexpected error in the driver, retrying in 30s")
            requeue = 30.0
        if requeue is not None and requeue <= 0:
            continue
        timeout_s = resync_s if requeue is None else min(requeue, resync_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.wake.wait(), timeout=timeout_s)


async def drive_once(memo: Any, state: ObjectState, path: str, logger: Any) -> float | None:
    """One decision for the object at ``path``, written with its resourceVersion. Returns when
    to decide again (0: at once)."""
    reconciler: Reconciler = memo.state["reconciler"]
    client: KubeClient = memo.state["client"]
    fresh = state.body if state.body is not None else await client.get(path)
    if fresh is None or fresh["metadata"].get("deletionTimestamp"):
        return None  # gone or going: the garbage collector removes what it owned
    state.command.clear()
    with DEFAULT_METRICS.reconcile_timer():
        deciding = asyncio.ensure_future(reconciler.reconcile(fresh))
        commanded = asyncio.ensure_future(state.command.wait())
        await asyncio.wait([deciding, commanded], return_when=asyncio.FIRST_COMPLETED)
        commanded.cancel()
        if not deciding.done():  # a new command: it goes before the check in progress
            deciding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deciding
            logger.info("a new command arrived: the check in progress is cancelled")
            return 0
        outcome: Outcome = deciding.result()
    old = {k: v for k, v in (fresh.get("status") or {}).items() if k != UNRECORDED}
    new = {k: v for k, v in outcome.status.items() if k != UNRECORDED}
    changes = status_patch(old, new)
    if not changes and not outcome.events:
        return outcome.requeue_s
    # The decision goes to status together with what is still to record about it, so an
    # operator killed after this write and before the ledger and the Event loses neither.
    changes[UNRECORDED] = {
        "previous": old,
        "events": [
            {"reason": str(e.reason), "message": e.message, "warning": e.warning}
            for e in outcome.events
        ],
    }
    is_written, written = await _write_status(client, path, fresh, changes)
    if not is_written:
        logger.info("status changed under us (resourceVersion conflict): deciding again")
        state.body = None  # read it afresh
        return 0
    version = ((written or {}).get("metadata") or {}).get("resourceVersion")
    state.written = str(version) if version else None
    state.body = kept_body(written) if version else None
    await _record_and_post(
        memo, state, path, fresh, old, Outcome(new, outcome.events, None), logger
    )
    return outcome.requeue_s


UNRECORDED = "unrecorded"


async def _record_and_post(
    memo: Any,
    state: ObjectState,
    path: str,
    fresh: dict[str, Any],
    old: dict[str, Any],
    outcome: Outcome,
    logger: Any,
) -> None:
    """Ledger and gauges of a written decision, ``status.unrecorded`` cleared, then its
    Events. In this order a restart never posts an Event twice (it is posted only after the
    record is cleared) and never loses a ledger row (the ledger drops a replayed one)."""
    await record(memo, fresh, old, outcome, logger)
    client: KubeClient = memo.state["client"]
    done = await client.patch(f"{path}/status", {"status": {UNRECORDED: None}}, urgent=True)
    version = ((done or {}).get("metadata") or {}).get("resourceVersion")
    state.written = str(version) if version else state.written
    state.body = kept_body(done) if version else None
    for event in outcome.events:
        logger.info("%s: %s", event.reason, event.message)
        _post(fresh, event)


async def recover_unrecorded(memo: Any, state: ObjectState, path: str, logger: Any) -> None:
    """When a driver starts: a decision written by an operator that died before recording it
    is recorded now (the ledger ignores a transition it already has)."""
    client: KubeClient = memo.state["client"]
    seen = state.body
    if seen is not None and not (seen.get("status") or {}).get(UNRECORDED):
        return  # the watch event that started the driver shows nothing to record: no GET
    fresh = await client.get(path)
    pending = ((fresh or {}).get("status") or {}).get(UNRECORDED)
    if fresh is None or not pending:
        return
    current = {k: v for k, v in (fresh.get("status") or {}).items() if k != UNRECORDED}
    events = [
        Event(Reason(e["reason"]), e.get("message", ""), bool(e.get("warning")))
        for e in pending.get("events") or []
        if e.get("reason") in {r.value for r in Reason}
    ]
    logger.info("recording a decision its operator wrote but did not record")
    await _record_and_post(
        memo,
        state,
        path,
        fresh,
        dict(pending.get("previous") or {}),
        Outcome(current, events, None),
        logger,
    )


async def _write_status(
    client: KubeClient, path: str, fresh: dict[str, Any], changes: dict[str, Any]
) -> tuple[bool, dict[str, Any] | None]:
    """Patch status if nobody wrote it since ``fresh`` was read: (written, the object the API
    server answered); (False, None) on a conflict. A write of spec or metadata alone (a command, a label) is no
    conflict for a decision already taken: it is written, and the next decision sees it."""

    async def patch(obj: dict[str, Any]) -> dict[str, Any] | None:
        body: dict[str, Any] = {"status": changes}
        rv = obj["metadata"].get("resourceVersion")
        if rv:
            body["metadata"] = {"resourceVersion": rv}
        return await client.patch(f"{path}/status", body, urgent=True)

    try:
        done = await patch(fresh)
    except KubeAPIError as exc:
        if exc.status != 409:
            raise
        again = await client.get(path)
        if again is None or (again.get("status") or {}) != (fresh.get("status") or {}):
            return False, None
        try:
            done = await patch(again)
        except KubeAPIError as retry_exc:
            if retry_exc.status != 409:
                raise
            return False, None
    return True, done


async def report_blocked(memo: Any, path: str, exc: EdgeError, logger: Any) -> None:
    """An edge error that stops the object (a full Service range, a 403) reaches its status
    (Progressing, reason EdgeError) and, once per distinct message, a Warning Event."""
    client: KubeClient = memo.state["client"]
    message = f"blocked, retrying: {exc}"[:1000]
    try:
        fresh = await client.get(path)
        if fresh is None:
            return
        status = ModelDeploymentStatus.model_validate(fresh.get("status") or {})
        if status.message == message:
            return
        change = ConditionChange(
            ConditionType.PROGRESSING,
            True,
            Reason.EDGE_ERROR,
            message,
            int(fresh["metadata"].get("generation") or 1),
        )
        new = status.model_copy(
            update={
                "message": message,
                "conditions": merge_conditions(status.conditions, [change], SystemClock().now()),
            }
        )
        await client.patch(
            f"{path}/status", {"status": status_patch(status.to_dict(), new.to_dict())}
        )
        _post(fresh, Event(Reason.EDGE_ERROR, message, warning=True))
    except EdgeError as again:  # the API itself is what is down: the log says it
        logger.warning("cannot report the edge error in status: %s", again)


async def record(
    memo: Any, fresh: dict[str, Any], old: dict[str, Any], outcome: Outcome, logger: Any
) -> None:
    """Tell the operator's own metrics and the ledger about a status transition."""
    meta = fresh["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    observe_outcome(namespace, name, old, outcome.status, outcome.events)
    ledger = memo.state.get("ledger")
    if ledger is None:
        return
    try:
        await ledger.record_transition(
            namespace, name, old, outcome.status, fresh.get("spec") or {}
        )
    except LedgerError as exc:
        # History matters, but never more than rolling back: log and go on.
        logger.warning("ledger write failed, transition not recorded: %s", exc)


async def ensure_reconciler(memo: Any) -> None:
    if "reconciler" not in memo.state:
        conn = memo.state["connection"]
        client = KubeClient(
            conn, timeout_s=memo.settings.request_timeout_s, retries=memo.settings.retries
        )
        start_informers(client, memo.settings)
        memo.state["client"] = client
        memo.state["reconciler"] = memo.make_reconciler(client, memo.settings)


# What the operator watches besides its ModelDeployments: the children it observes on every
# poll. Their state then comes from the watch, so an idle or waiting object costs no reads.
INFORMED_KINDS = (("apps/v1", "Deployment"), ("v1", "Pod"), ("v1", "Service"))
# Every child carries it (manifests.common_labels).
MANAGED_SELECTOR = "app.kubernetes.io/managed-by=tensorgate"


def start_informers(client: KubeClient, settings: Settings) -> None:
    for api_version, kind in INFORMED_KINDS:
        client.inform(api_version, kind, settings.namespaces, MANAGED_SELECTOR)
