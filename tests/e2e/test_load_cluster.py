"""Load on the real control plane (issue 12, item 6): 500 ModelDeployments applied at once.

The operator runs as a subprocess (``tensorgate run``, the ServiceAccount token) so that its
peak resident set (``VmHWM`` in /proc/PID/status) is its own. The 500 objects ask for no GPU
and one replica of a model URI with no folder behind it: the pod player records the missing
version and starts no serving backend (no TensorFlow process per pod), so the pods stay
unready, as a TF Serving whose model is not there yet would, and every object stays in
Deploying (its readinessTimeout is 10 minutes). What is measured is the operator: every object
reconciled (a phase in status, its Deployment created) and its memory bounded.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.player import PodPlayer
from tests.e2e.conftest import TIMINGS, Cluster
from tests.e2e.operator_process import operator_processes, vm_hwm_kib
from tests.helpers import eventually
from tests.integration.conftest import ModelRepo
from tests.integration.operator.conftest import KubeEnv

pytestmark = [pytest.mark.cluster]

OBJECTS = 500
# The chart's memory limit for the operator (charts/tensorgate/values.yaml resources.limits).
CHART_LIMIT_KIB = 512 * 1024
RECONCILE_S = 120.0


def _manifests(repo: ModelRepo, namespace: str) -> list[dict[str, Any]]:
    docs = []
    for i in range(OBJECTS):
        doc = repo.manifest("1", name=f"load-{i:03d}")
        doc["metadata"]["namespace"] = namespace
        doc["spec"]["model"]["uri"] = "/nonexistent/tensorgate-load"  # no backend started
        docs.append(doc)
    return docs


async def test_cluster_500_model_deployments_applied_at_once_are_all_reconciled(
    cluster: Cluster,
    kube: KubeEnv,
    player: PodPlayer | None,
    model_repo: ModelRepo,
    tmp_path: Path,
) -> None:
    """``kubectl apply`` of 500 ModelDeployments in one go: every one gets a phase and its
    stable Deployment, and the operator's peak RSS stays under the chart's 512 Mi limit."""
    backends_before = player.started_total if player is not None else 0
    args = ["--interval", "60"]
    with operator_processes(kube.connection, kube.namespace, tmp_path / "ops", args) as ops:
        proc = ops.start()
        idle_kib = 0

        async def started() -> bool:
            nonlocal idle_kib
            idle_kib = vm_hwm_kib(proc.pid)
            return "Initial authentication has finished" in ops.logs()

        await eventually(started, timeout_s=60, every_s=0.2, what="the operator started")
        manifest = yaml.safe_dump_all(_manifests(model_repo, kube.namespace))
        began = time.monotonic()
        cluster.kubectl("apply", "--server-side", "-f", "-", stdin=manifest, timeout_s=300)
        applied_s = time.monotonic() - began
        md_path = kube.path("tensorgate.dev/v1alpha1", "ModelDeployment")
        dep_path = kube.path("apps/v1", "Deployment")
        last: dict[str, int] = {}

        async def all_reconciled() -> bool:
            mds = await kube.client.list(md_path)
            phased = sum(1 for md in mds if (md.get("status") or {}).get("phase"))
            deployments = len(await kube.client.list(dep_path))
            last.update(objects=len(mds), phased=phased, deployments=deployments)
            return phased == OBJECTS and deployments >= OBJECTS

        try:
            await eventually(
                all_reconciled, timeout_s=RECONCILE_S, every_s=2, what="500 reconciled"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {last}") from None
        finally:  # the figures, also when it fails (the terminal summary prints them)
            TIMINGS["load: operator VmHWM idle MiB"] = idle_kib / 1024
            TIMINGS["load: operator VmHWM under 500 MiB"] = vm_hwm_kib(proc.pid) / 1024
            TIMINGS.update({f"load: {k}": float(v) for k, v in last.items()})
        reconciled_s = time.monotonic() - began
        await asyncio.sleep(0)  # the peak so far is what the operator needed for 500
        peak_kib = vm_hwm_kib(proc.pid)
        assert proc.poll() is None, ops.logs()[-2000:]
        logs = ops.logs()
    phases = {md["status"]["phase"] for md in await kube.client.list(md_path)}
    TIMINGS["load: 500 applied (kubectl apply)"] = applied_s
    TIMINGS["load: 500 reconciled, from apply"] = reconciled_s
    assert phases <= {"Deploying", "Pending"}, phases
    assert peak_kib < CHART_LIMIT_KIB, f"operator peak RSS {peak_kib / 1024:.0f} MiB"
    if player is not None:
        assert player.started_total == backends_before  # no TF process was started
    assert "Traceback" not in logs, logs[-3000:]
