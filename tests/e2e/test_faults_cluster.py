"""Faults during a rollout on the real control plane (issue 12, item 4): the operator
SIGKILLed in every phase and restarted; kube-apiserver and etcd killed mid-rollout.

The operator runs as a subprocess (``tensorgate run``, the ServiceAccount token only), so it
can be killed with no cleanup handler run; the proof is read from what outlives it: status
history, Events, and the ledger (sqlite) both operators wrote.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ANY_CLUSTER, ROOT, TIMINGS, Cluster
from tests.e2e.operator_process import OperatorProcesses, operator_processes
from tests.helpers import eventually, require
from tests.integration.conftest import BROKEN, CANDIDATE, GOOD, ModelRepo
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.rollout_scenarios import NAME, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.tf]

KILL_IN = ("Deploying", "SmokeTesting", "Evaluating", "Progressing", "Promoting")
# No metric checks: the scrape provider needs user traffic, and this is about the steps.
STEPS: dict[str, Any] = {"steps": [50, 100], "interval": "3s", "metrics": []}


@contextlib.asynccontextmanager
async def watch_status(
    kube: KubeEnv, on_change: Callable[[dict[str, Any]], None]
) -> AsyncIterator[list[tuple[str, Any]]]:
    """(phase, canaryWeight) of every status a watch on the object delivers, in order;
    ``on_change`` is called at once with each new status (before the next event is read)."""
    seen: list[tuple[str, Any]] = []
    path = kube.path("tensorgate.dev/v1alpha1", "ModelDeployment")

    async def follow() -> None:
        while True:
            with contextlib.suppress(Exception):
                async for event in kube.client.watch(path, field_selector=f"metadata.name={NAME}"):
                    status = (event.get("object") or {}).get("status") or {}
                    key = (status.get("phase"), status.get("canaryWeight"))
                    if key[0] and (not seen or seen[-1] != key):
                        seen.append(key)
                        on_change(status)
            await asyncio.sleep(0.2)

    task = asyncio.create_task(follow())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def watched(seen: list[tuple[str, Any]], phase: str) -> None:
    """Until the watch too has delivered ``phase`` (a poll may see it first)."""

    async def probe() -> bool:
        return bool(seen) and seen[-1][0] == phase

    await eventually(probe, timeout_s=30, what=f"the watch to deliver {phase}")


def _phases(seen: list[tuple[str, Any]]) -> list[str]:
    """The phases after the first watch event (which shows the stable deploy's Promoted)."""
    assert seen and seen[0][0] == "Promoted", seen
    out: list[str] = []
    for phase, _ in seen[1:]:
        if not out or out[-1] != phase:
            out.append(phase)
    return out


async def _events(kube: KubeEnv) -> list[dict[str, Any]]:
    return [
        e
        for e in await kube.client.list(kube.path("v1", "Event"))
        if (e.get("involvedObject") or {}).get("kind") == "ModelDeployment"
        and e["involvedObject"].get("name") == NAME
    ]


def _ledger(db: Path, version: str) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The ledger's rollout rows of candidate ``version`` and the phases its one row went
    through (read with sqlite3 itself, not the ledger code under test)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT id, decision FROM rollouts WHERE model = ? AND candidate_version = ?",
            (NAME, version),
        ).fetchall()
        phases = [
            p
            for (p,) in conn.execute(
                "SELECT to_phase FROM phase_changes WHERE rollout_id = ? ORDER BY at, id",
                (rows[0][0] if rows else -1,),
            )
        ]
    return rows, phases


@contextlib.asynccontextmanager
async def stable_under_operator(
    kube: KubeEnv, repo: ModelRepo, tmp_path: Path, db: Path | None = None, **analysis: Any
) -> AsyncIterator[OperatorProcesses]:
    """An operator process (ledger ``db`` when given) that has promoted the good version."""
    args = ["--interval", "1", *(["--ledger-dsn", f"sqlite:///{db}"] if db else [])]
    with operator_processes(kube.connection, kube.namespace, tmp_path / "ops", args) as ops:
        ops.start()
        await kube.apply_md(repo.manifest(GOOD, **(analysis or STEPS)))
        await wait_phase(kube, "Promoted", version=GOOD, timeout_s=120)
        yield ops


def _kill_on_phase(
    ops: OperatorProcesses, kill_in: tuple[str, ...]
) -> tuple[Callable[[dict[str, Any]], None], list[str]]:
    """A watch callback that SIGKILLs the operator the first time each phase of ``kill_in``
    is seen and starts a new one at once."""
    killed: list[str] = []

    def on_change(status: dict[str, Any]) -> None:
        phase = status.get("phase")
        if killed or phase in kill_in:
            ops.rollout_ids.add(status.get("rolloutId"))
        if phase in kill_in and phase not in killed:
            killed.append(phase)
            ops.kill()
            ops.start()

    return on_change, killed


async def test_cluster_operator_sigkilled_in_every_phase_resumes(
    kube: KubeEnv, model_repo: ModelRepo, tmp_path: Path
) -> None:
    """One rollout of a good candidate, the operator SIGKILLed the moment a watch sees each of
    Deploying, SmokeTesting, Evaluating, Progressing and Promoting, and a new one started:
    the same rollout goes on to Promoted. Every phase and every step is seen once in order
    (none repeated, none skipped), status history holds one Promoted, no Event is posted
    twice, and the ledger has one row for the rollout with each phase once; nothing rolled
    back."""
    db = tmp_path / "ledger.db"
    async with stable_under_operator(kube, model_repo, tmp_path, db) as ops:
        on_change, killed = _kill_on_phase(ops, KILL_IN)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with watch_status(kube, on_change) as seen:
            await kube.apply_md(model_repo.manifest(CANDIDATE, **STEPS))
            md = await wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=240)
            await watched(seen, "Promoted")
        TIMINGS["rollout with 5 operator SIGKILLs"] = loop.time() - started
        logs = ops.logs()
    assert killed == list(KILL_IN), (killed, seen)
    assert len(ops.started) == 1 + len(KILL_IN)
    assert ops.rollout_ids == {md["status"]["rolloutId"]}, ops.rollout_ids  # one rollout
    assert _phases(seen) == [*KILL_IN, "Promoted"], seen
    weights = [w for phase, w in seen[1:] if phase == "Progressing"]
    assert weights == [50, 100], seen  # every step once, in order
    status = md["status"]
    assert [h["decision"] for h in status["history"]] == ["Promoted"], status["history"]
    assert status["stableVersion"] == CANDIDATE and status["gate"]["decision"] == "promote"
    events = await _events(kube)
    posted = collections.Counter((e["reason"], e["message"]) for e in events)
    twice = {k: n for k, n in posted.items() if n > 1}
    counted = [(e["reason"], e.get("count")) for e in events if (e.get("count") or 1) > 1]
    assert not twice and not counted, (twice, counted)
    reasons = collections.Counter(e["reason"] for e in events)
    # Events are posted after the decision's record is cleared from status: a restart never
    # posts one twice (a SIGKILL in the instant between the two can still lose one).
    assert reasons["RolledBack"] == 0, reasons
    rows, ledger_phases = _ledger(db, CANDIDATE)
    assert len(rows) == 1, rows  # one rollout, not one per operator
    assert rows[0][1] in (None, "Promoted"), rows
    assert len(ledger_phases) == len(set(ledger_phases)), ledger_phases
    assert "RolledBack" not in ledger_phases, ledger_phases
    assert "Traceback" not in logs


async def test_cluster_operator_sigkilled_while_rolling_back_rolls_back_once(
    kube: KubeEnv, model_repo: ModelRepo, tmp_path: Path
) -> None:
    """A broken candidate, the operator SIGKILLed in SmokeTesting and in Evaluating (where the
    gate fails): the new operator rolls back exactly once (one RolledBack in status history,
    Events and the ledger) and the stable model is still the good one."""
    db = tmp_path / "ledger.db"
    async with stable_under_operator(kube, model_repo, tmp_path, db) as ops:
        on_change, killed = _kill_on_phase(ops, ("SmokeTesting", "Evaluating"))
        async with watch_status(kube, on_change) as seen:
            await kube.apply_md(model_repo.manifest(BROKEN, **STEPS))
            md = await wait_phase(kube, "RolledBack", timeout_s=240)
            await watched(seen, "RolledBack")
            await asyncio.sleep(3)  # a second rollback would come within a resync or two
            md = await kube.get_md(NAME) or md
    assert killed == ["SmokeTesting", "Evaluating"], (killed, seen)
    assert _phases(seen) == ["Deploying", "SmokeTesting", "Evaluating", "RolledBack"], seen
    status = md["status"]
    assert [h["decision"] for h in status["history"]] == ["RolledBack"], status["history"]
    assert status["stableVersion"] == GOOD
    reasons = collections.Counter(e["reason"] for e in await _events(kube))
    assert reasons["RolledBack"] <= 1, reasons
    rows, ledger_phases = _ledger(db, BROKEN)
    assert len(rows) == 1 and rows[0][1] == "RolledBack", rows
    assert ledger_phases.count("RolledBack") == 1, ledger_phases


async def test_cluster_ledger_keeps_a_decision_whose_operator_was_killed_after_the_status_write(
    kube: KubeEnv, model_repo: ModelRepo, tmp_path: Path
) -> None:
    """The operator SIGKILLed as soon as a watch sees Promoted (its status write done), a new
    one started: the ledger still records the rollout as Promoted."""
    db = tmp_path / "ledger.db"
    args = ["--interval", "1", "--ledger-dsn", f"sqlite:///{db}"]
    with operator_processes(kube.connection, kube.namespace, tmp_path / "ops", args) as ops:
        ops.start()
        on_change, killed = _kill_on_phase(ops, ("Promoted",))
        async with watch_status(kube, on_change):
            await kube.apply_md(model_repo.manifest(GOOD, **STEPS))
            await wait_phase(kube, "Promoted", version=GOOD, timeout_s=120)
        assert killed == ["Promoted"]

        async def recorded() -> bool:
            rows, _ = _ledger(db, GOOD)
            return bool(rows) and rows[0][1] == "Promoted"

        await eventually(recorded, timeout_s=20, what="the ledger row of version 1 Promoted")


def _cluster_dir() -> Path:
    out = subprocess.run(
        [
            "bash",
            "-c",
            f'source "{ROOT}/tests/cluster/env.sh" && echo "$KWOK_WORKDIR/clusters/$CLUSTER_NAME"',
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return Path(out.stdout.strip())


def _pid(folder: Path, component: str) -> int:
    return int((folder / "pids" / f"{component}.pid").read_text().strip())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


OUTAGE_S = 20.0


async def test_cluster_apiserver_and_etcd_killed_mid_rollout_the_rollout_finishes(
    cluster: Cluster, kube: KubeEnv, model_repo: ModelRepo, tmp_path: Path
) -> None:
    """kube-apiserver and etcd SIGKILLed while a canary is at its first step and kept down for
    OUTAGE_S (the supervisor held), then restarted by tests/cluster/supervise.sh: the operator
    process is still running, regains its watch, and the same rollout is promoted with each
    step once. The controller-manager and scheduler keep running (or are restarted), so the
    new pods of the next steps are created and scheduled."""
    require(not ANY_CLUSTER, "the test cluster of tests/cluster", "unset TENSORGATE_E2E_KUBECONFIG")
    folder = _cluster_dir()
    hold = folder / "supervisor.hold"
    steps = {**STEPS, "steps": [20, 60, 100]}
    async with stable_under_operator(kube, model_repo, tmp_path, **steps) as ops:
        await kube.apply_md(model_repo.manifest(CANDIDATE, **steps))
        md = await wait_phase(kube, "Progressing", timeout_s=120)
        rollout_id = md["status"]["rolloutId"]
        hold.touch()
        try:
            for component in ("kube-apiserver", "etcd"):
                os.kill(_pid(folder, component), signal.SIGKILL)
            await asyncio.sleep(OUTAGE_S)  # the fault's length, not a wait for an outcome
            down = cluster.kubectl("get", "--raw", "/readyz", check=False, timeout_s=10)
            assert down.returncode != 0, "the API server was still answering"
        finally:
            hold.unlink()

        async def api_back() -> bool:
            out = cluster.kubectl("get", "--raw", "/readyz", check=False, timeout_s=10)
            return out.returncode == 0

        await eventually(api_back, timeout_s=120, every_s=1, what="the API server back")
        async with watch_status(kube, lambda _: None) as seen:
            md = await wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=180)
        assert ops.current.poll() is None, "the operator exited during the outage"
        assert len(ops.started) == 1
    status = md["status"]
    assert status["rolloutId"] == rollout_id
    assert [h["decision"] for h in status["history"]] == ["Promoted"], status["history"]
    assert "RolledBack" not in [p for p, _ in seen], seen
    for component in ("kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"):
        assert _alive(_pid(folder, component)), component


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_cluster_prometheus_unreachable_ends_in_a_rollback_never_a_promotion(
    kube: KubeEnv, model_repo: ModelRepo, tmp_path: Path
) -> None:
    """The operator's Prometheus is a closed port: every step's check cannot run (an edge
    error, not a pass); after ``maxEdgeErrors`` of them the canary is rolled back, and the
    Prometheus address never reaches a promotion."""
    check = {"name": "errors", "provider": "prometheus", "query": "sum(up)", "max": 1}
    analysis = {**STEPS, "metrics": [check], "maxEdgeErrors": 2}
    args = ["--interval", "1", "--prometheus-url", f"http://127.0.0.1:{_closed_port()}"]
    with operator_processes(kube.connection, kube.namespace, tmp_path / "ops", args) as ops:
        ops.start()
        await kube.apply_md(model_repo.manifest(GOOD, **STEPS))
        await wait_phase(kube, "Promoted", version=GOOD, timeout_s=120)
        async with watch_status(kube, lambda _: None) as seen:
            await kube.apply_md(model_repo.manifest(CANDIDATE, **analysis))
            md = await wait_phase(kube, "RolledBack", timeout_s=180)
    assert "Promoting" not in _phases(seen), seen
    status = md["status"]
    assert status["stableVersion"] == GOOD, status
    assert [h["decision"] for h in status["history"]] == ["RolledBack"], status["history"]
    assert "maxEdgeErrors 2" in status["message"], status["message"]


async def test_cluster_canary_pods_never_ready_end_at_the_readiness_timeout(
    kube: KubeEnv, model_repo: ModelRepo, tmp_path: Path
) -> None:
    """A candidate version whose folder does not exist: the pod player's backend cannot load
    it, so its pods are never Ready. At ``readinessTimeout`` the rollout is rolled back (the
    stable version keeps serving), with the reason in status."""
    async with (
        stable_under_operator(kube, model_repo, tmp_path),
        watch_status(kube, lambda _: None) as seen,
    ):
        await kube.apply_md(model_repo.manifest("9", **STEPS, readinessTimeout="10s"))
        md = await wait_phase(kube, "RolledBack", timeout_s=120)
    assert _phases(seen)[0] == "Deploying" and "SmokeTesting" not in _phases(seen), seen
    status = md["status"]
    assert status["stableVersion"] == GOOD, status
    assert [h["decision"] for h in status["history"]] == ["RolledBack"], status["history"]
    assert "readinessTimeout 10s" in status["message"], status["message"]
