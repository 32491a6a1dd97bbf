"""Rollouts that stay correct under everyday edits and commands (issue: correct rollouts).

Written once for every backend (KMock and the real control plane). Metric checks read a
``FakeMetricsProvider`` with exact values, so each scenario decides on what it is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tensorgate.app import build_reconciler
from tensorgate.checks import PlatformChecker
from tensorgate.metrics.fake import FakeMetricsProvider
from tensorgate.platform.kubernetes.client import KubeClient
from tensorgate.platform.kubernetes.platform import KubernetesPlatform
from tensorgate.settings import Settings
from tests.helpers import eventually
from tests.integration.conftest import BROKEN, CANDIDATE, GOOD, ModelRepo
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.rollout_scenarios import (
    NAME,
    Starter,
    condition,
    deploy_stable,
    wait_phase,
    with_metrics,
)

HEALTHY = {("latency-p99", "canary"): 5.0, ("error-rate", "canary"): 0.0}
FAILING = {("latency-p99", "canary"): 5.0, ("error-rate", "canary"): 0.25}
ROLLOUT_PHASES = ["Deploying", "SmokeTesting", "Evaluating", "Progressing", "Promoting", "Promoted"]


@contextlib.asynccontextmanager
async def phases_seen(kube: KubeEnv) -> AsyncIterator[list[str]]:
    """Every phase the object goes through, as a watch on it sees them (not polled)."""
    seen: list[str] = []

    async def follow() -> None:
        path = kube.path("tensorgate.dev/v1alpha1", "ModelDeployment")
        while True:
            with contextlib.suppress(Exception):
                async for event in kube.client.watch(path, field_selector=f"metadata.name={NAME}"):
                    phase = ((event.get("object") or {}).get("status") or {}).get("phase")
                    if phase and (not seen or seen[-1] != phase):
                        seen.append(phase)
            await asyncio.sleep(0.2)

    task = asyncio.create_task(follow())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def command(kube: KubeEnv, name: str) -> str:
    """What ``kubectl tensorgate NAME`` does: the command annotation with a fresh id."""
    command_id = uuid.uuid4().hex[:12]
    annotations = {"tensorgate.dev/command": name, "tensorgate.dev/command-id": command_id}
    path = kube.path("tensorgate.dev/v1alpha1", "ModelDeployment", NAME)
    await kube.client.patch(path, {"metadata": {"annotations": annotations}})
    return command_id


async def acknowledged(
    kube: KubeEnv, command_id: str, timeout_s: float
) -> tuple[dict[str, Any], float]:
    """The object once status.lastCommand acknowledges ``command_id``, and how long it took."""
    started = time.monotonic()

    async def probe() -> dict[str, Any] | None:
        md = await kube.get_md(NAME) or {}
        last = (md.get("status") or {}).get("lastCommand") or {}
        return md if last.get("id") == command_id else None

    md = await eventually(probe, timeout_s=timeout_s, what=f"command {command_id} acknowledged")
    return md, time.monotonic() - started


def alias_repo(repo: ModelRepo, version: str, source: str) -> Path:
    """Another model base path whose folder ``version`` holds ``source``'s model: the same
    version string, another URI (what a mistaken upload looks like)."""
    alt = repo.base.parent / f"{repo.base.name}-alt"
    if not (alt / version).exists():
        shutil.copytree(repo.base / source, alt / version)
    return alt


async def scenario_same_version_uri_edit_is_gated_again(
    kube: KubeEnv, start_operator: Starter, repo: ModelRepo
) -> None:
    """A good v2 in Progressing, then model.uri patched to a broken model with the same version
    string: a new revision, gated from the start, rolled back; never promoted, and the stable
    pods' model config never changes."""
    await start_operator(with_metrics(FakeMetricsProvider(HEALTHY)))
    slow = {"steps": [50, 100], "interval": "60s"}
    await deploy_stable(kube, repo, **slow)
    stable_dep = kube.path("apps/v1", "Deployment", f"{NAME}-stable")
    before = (await kube.client.get(stable_dep) or {})["spec"]["template"]
    await kube.apply_md(repo.manifest(CANDIDATE, **slow))
    md = await wait_phase(kube, "Progressing", timeout_s=120)
    first_revision = md["status"]["canaryRevision"]
    edited = repo.manifest(CANDIDATE, **slow)
    edited["spec"]["model"]["uri"] = str(alias_repo(repo, CANDIDATE, BROKEN))
    async with phases_seen(kube) as seen:
        await kube.apply_md(edited)
        md = await wait_phase(kube, "RolledBack", timeout_s=120)
    status = md["status"]
    assert "Promoted" not in seen, seen
    assert status["canaryRevision"] != first_revision
    assert status["stableVersion"] == GOOD and status["stableModel"]["uri"] == str(repo.base)
    degraded = condition(md, "Degraded")
    assert degraded is not None and degraded["reason"] == "AccuracyGateFailed", degraded
    assert status["gate"]["canaryAccuracy"] < 0.3, status["gate"]
    assert [h["decision"] for h in status["history"][:2]] == ["RolledBack", "Superseded"]
    after = (await kube.client.get(stable_dep) or {})["spec"]["template"]
    assert after == before  # what the stable pods run and read never changed


async def scenario_every_phase_reaches_status(
    kube: KubeEnv, start_operator: Starter, repo: ModelRepo, ledger_dsn: str
) -> None:
    """One decision per status write: a watch sees every phase, and so does the ledger."""
    # A 10-minute resync: only watch events and the engine's own waits drive the rollout.
    await start_operator(
        with_metrics(FakeMetricsProvider(HEALTHY)), interval_s=600, ledger_dsn=ledger_dsn
    )
    await deploy_stable(kube, repo)
    async with phases_seen(kube) as seen:
        await kube.apply_md(repo.manifest(CANDIDATE))
        await wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=120)
        await eventually(
            lambda: asyncio.sleep(0, result=seen[-1:] == ["Promoted"]), what="last phase seen"
        )
    assert seen[-len(ROLLOUT_PHASES) :] == ROLLOUT_PHASES, seen
    from tensorgate.ledger.sql import open_ledger

    ledger = await open_ledger(ledger_dsn)
    try:
        rows = await ledger.history(kube.namespace, NAME)
    finally:
        await ledger.close()
    rollout = next(r for r in rows if r.candidate_version == CANDIDATE)
    recorded = [p.to_phase for p in rollout.phases]
    assert [p for p in recorded if p in ROLLOUT_PHASES] == ROLLOUT_PHASES, recorded


async def scenario_commands_from_paused(
    kube: KubeEnv, start_operator: Starter, repo: ModelRepo, within_s: float
) -> dict[str, float]:
    """rollback.automatic false: a failed check pauses; ``abort`` and ``promote`` act from
    Paused, each acknowledged in status.lastCommand once. Returns the measured latencies."""
    manual = {"steps": [50, 100], "interval": "2s"}
    provider = FakeMetricsProvider(FAILING)
    # A 10-minute resync: a command is acted on because its watch event wakes the driver.
    await start_operator(with_metrics(provider), interval_s=600)
    await deploy_stable(kube, repo, **manual)
    doc = repo.manifest(CANDIDATE, **manual)
    doc["spec"]["rollback"] = {"automatic": False}
    await kube.apply_md(doc)
    await wait_phase(kube, "Paused", timeout_s=120)
    md, abort_s = await acknowledged(kube, await command(kube, "abort"), within_s)
    assert md["status"]["phase"] == "RolledBack", md["status"]
    assert md["status"]["lastCommand"]["result"] == "Applied"

    retry_id = await command(kube, "retry")  # the same revision, gated again from the start
    await acknowledged(kube, retry_id, within_s)
    await wait_phase(kube, "Paused", timeout_s=120)
    md, promote_s = await acknowledged(kube, await command(kube, "promote"), within_s)
    assert md["status"]["phase"] in {"Promoting", "Promoted"}, md["status"]
    await wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=120)

    ignored = await command(kube, "promote")  # nothing to promote: said, not done
    md, _ = await acknowledged(kube, ignored, within_s)
    assert md["status"]["lastCommand"]["result"] == "Ignored"
    assert "does not apply in phase Promoted" in md["status"]["lastCommand"]["message"]
    return {"abort_s": abort_s, "promote_s": promote_s}


def with_stuck_smoke() -> Any:
    """A reconciler whose smoke inference never answers (a server that hangs)."""

    class StuckSmoke(PlatformChecker):
        async def smoke(self, body: Any, spec: Any, track: str) -> Any:
            await asyncio.Event().wait()

    def make(client: KubeClient, settings: Settings) -> Any:
        checker = StuckSmoke(KubernetesPlatform(client), {"scrape": FakeMetricsProvider(HEALTHY)})
        return build_reconciler(client, settings, checker)

    return make


async def scenario_stuck_smoke_ends_at_deadline(
    kube: KubeEnv, start_operator: Starter, repo: ModelRepo
) -> None:
    await start_operator(with_stuck_smoke())
    await deploy_stable(kube, repo, progressDeadline="5s")
    await kube.apply_md(repo.manifest(CANDIDATE, progressDeadline="5s"))
    md = await wait_phase(kube, "RolledBack", timeout_s=120)
    degraded = condition(md, "Degraded")
    assert degraded is not None and degraded["reason"] == "ProgressDeadlineExceeded", degraded
    assert "SmokeTesting" in degraded["message"] and "progressDeadline 5s" in degraded["message"]


async def scenario_two_operators_lose_no_decision(
    kube: KubeEnv, start_operator: Starter, repo: ModelRepo
) -> None:
    """Two operators drive one object: status writes carry resourceVersion, so each decision
    is written once; the phases follow in order and nothing is recorded twice."""
    for _ in range(2):
        await start_operator(with_metrics(FakeMetricsProvider(HEALTHY)))
    await deploy_stable(kube, repo)
    async with phases_seen(kube) as seen:
        await kube.apply_md(repo.manifest(CANDIDATE))
        md = await wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=180)
    assert seen[seen.index("Deploying") :] == ROLLOUT_PHASES, seen
    assert [h["decision"] for h in md["status"]["history"]] == ["Promoted"]

    async def promoted_events() -> int:
        events = await kube.client.list(kube.path("v1", "Event"))
        return sum(
            int(e.get("count") or 1)
            for e in events
            if e.get("reason") == "Promoted" and (e.get("involvedObject") or {}).get("name") == NAME
        )

    await eventually(promoted_events, timeout_s=30, what="the Promoted Event")
    assert await promoted_events() == 1  # one decision, one writer, one Event
