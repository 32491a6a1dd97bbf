"""kopf handlers: thin. Translate kopf's calls into ``Reconciler.reconcile`` and back.

Registered into an explicit registry (no module globals), so tests can run several
operators in one process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from tensorgate.api.spec import GROUP, PLURAL, VERSION
from tensorgate.engine.rollout import Event
from tensorgate.errors import ConfigError, EdgeError, LedgerError
from tensorgate.ledger.sql import open_ledger
from tensorgate.observability import DEFAULT as DEFAULT_METRICS
from tensorgate.observability import observe_outcome, start_metrics_server
from tensorgate.platform.kubernetes.client import KubeClient, object_path
from tensorgate.reconcile import COMMAND_ANNOTATION, Outcome, Reconciler
from tensorgate.settings import Settings


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


ReconcilerFactory = Callable[[KubeClient, Settings], Reconciler]


@dataclass
class OperatorMemo:
    """What every handler receives as ``memo`` (kopf copies it per resource: share by ref)."""

    settings: Settings
    make_reconciler: ReconcilerFactory
    state: dict[str, Any] = field(default_factory=dict)

    def lock(self, uid: str) -> asyncio.Lock:
        locks: dict[str, asyncio.Lock] = self.state.setdefault("locks", {})
        return locks.setdefault(uid, asyncio.Lock())


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A merge patch turning ``old`` status into ``new`` (removed keys become null)."""
    patch: dict[str, Any] = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


def _post(body: kopf.Body, event: Event) -> None:
    kopf.event(
        body,
        type="Warning" if event.warning else "Normal",
        reason=str(event.reason),
        message=event.message[:1000],
    )


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    """Register every handler of the operator into ``registry``."""
    resource = (GROUP, VERSION, PLURAL)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        # kopf's own bookkeeping lives in annotations under our prefix, never in status.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = memo.settings.request_timeout_s * 3
        # Restricted mode: no cluster-wide CRD/namespace scans, so RBAC stays minimal.
        settings.scanning.disabled = True
        ours: Settings = memo.settings
        if ours.metrics_port is not None and "metrics_server" not in memo.state:
            memo.state["metrics_server"] = start_metrics_server(
                ours.metrics_host, ours.metrics_port
            )
        if ours.ledger_dsn and "ledger" not in memo.state:
            memo.state["ledger"] = await open_ledger(
                ours.ledger_dsn, timeout_s=ours.request_timeout_s, retries=ours.retries
            )
        if memo.settings.peering is None:
            settings.peering.standalone = True
        else:
            settings.peering.name = memo.settings.peering
            settings.peering.mandatory = True
            settings.peering.clusterwide = not memo.settings.namespaces

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: Any, **_: Any) -> None:
        server = memo.state.pop("metrics_server", None)
        if server is not None:
            server.stop()
        ledger = memo.state.pop("ledger", None)
        if ledger is not None:
            await ledger.close()

    async def tick(body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Any) -> None:
        """Read the object fresh (kopf's body may lag), reconcile, write status once."""
        reconciler: Reconciler = memo.state["reconciler"]
        client: KubeClient = memo.state["client"]
        path = object_path(
            {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "metadata": {"name": body.metadata.name, "namespace": body.metadata.namespace},
            }
        )
        async with memo.lock(body.metadata.uid or body.metadata.name):
            try:
                fresh = await client.get(path)
                if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                    return  # gone or going: the garbage collector removes what it owned
                with DEFAULT_METRICS.reconcile_timer():
                    outcome: Outcome = await reconciler.reconcile(fresh)
                old = dict(fresh.get("status") or {})
                changes = status_patch(old, outcome.status)
                if changes:
                    await client.patch(f"{path}/status", {"status": changes})
                    await record(memo, fresh, old, outcome, logger)
            except ConfigError as exc:
                raise kopf.PermanentError(str(exc)) from exc
            except EdgeError as exc:
                logger.warning("edge error, retrying: %s", exc)
                raise kopf.TemporaryError(str(exc), delay=5) from exc
        if outcome.consumed_command:
            patch.metadata.annotations[COMMAND_ANNOTATION] = None
        for event in outcome.events:
            logger.info("%s: %s", event.reason, event.message)
            _post(body, event)

    @kopf.on.login(registry=registry)
    def login(memo: Any, **kwargs: Any) -> kopf.ConnectionInfo | None:
        """In-cluster ServiceAccount first, then the kubeconfig; tests may preset one."""
        info: kopf.ConnectionInfo | None = memo.state.get("connection")
        if info is None:
            info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        memo.state["connection"] = info
        return info

    @kopf.on.resume(*resource, registry=registry, id="resume")
    @kopf.on.create(*resource, registry=registry, id="create")
    @kopf.on.update(*resource, registry=registry, id="update")
    async def on_change(
        body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Any, **_: Any
    ) -> None:
        await ensure_reconciler(memo)
        await tick(body, patch, memo, logger)

    @kopf.timer(
        *resource,
        registry=registry,
        id="reconcile",
        interval=settings.reconcile_interval_s,
        initial_delay=1.0,
        sharp=False,
    )
    async def on_timer(
        body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Any, **_: Any
    ) -> None:
        await ensure_reconciler(memo)
        await tick(body, patch, memo, logger)


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
        memo.state["client"] = client
        memo.state["reconciler"] = memo.make_reconciler(client, memo.settings)
