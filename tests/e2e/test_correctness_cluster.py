"""Rollouts that stay correct on the real control plane: revisions, commands, deadlines,
concurrent writers, true weights and the GPU budget (the same scenarios run on KMock where
KMock can show them; optimistic concurrency and quotas need the real API server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tensorgate.metrics.fake import FakeMetricsProvider
from tests.e2e.conftest import TIMINGS, Cluster, OperatorStarter
from tests.helpers import eventually
from tests.integration.conftest import CANDIDATE, GOOD, ModelRepo
from tests.integration.operator import correctness_scenarios as cs
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.rollout_scenarios import NAME, wait_phase, with_metrics

pytestmark = [pytest.mark.cluster, pytest.mark.tf]


async def test_cluster_same_version_uri_edit_to_a_broken_model_is_rolled_back(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    await cs.scenario_same_version_uri_edit_is_gated_again(kube, start_operator, model_repo)


async def test_cluster_every_phase_is_seen_by_a_watch_and_the_ledger(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo, tmp_path: Path
) -> None:
    dsn = f"sqlite:///{tmp_path / 'ledger.db'}"
    await cs.scenario_every_phase_reaches_status(kube, start_operator, model_repo, dsn)


async def test_cluster_abort_and_promote_act_from_paused(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    took = await cs.scenario_commands_from_paused(kube, start_operator, model_repo, within_s=10)
    TIMINGS.update({f"command {k}": v for k, v in took.items()})


async def test_cluster_stuck_smoke_ends_at_its_deadline(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    await cs.scenario_stuck_smoke_ends_at_deadline(kube, start_operator, model_repo)


async def test_cluster_two_operators_writing_one_object_lose_no_decision(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    await cs.scenario_two_operators_lose_no_decision(kube, start_operator, model_repo)


async def _ready_pods(kube: KubeEnv) -> dict[str, int]:
    counts = {"stable": 0, "canary": 0}
    for pod in await kube.client.list(kube.path("v1", "Pod")):
        labels = pod["metadata"].get("labels") or {}
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        if ready and not pod["metadata"].get("deletionTimestamp"):
            track = labels.get("tensorgate.dev/track")
            if track in counts:
                counts[track] += 1
    return counts


def _gpu_manifest(repo: ModelRepo, version: str, **analysis: Any) -> dict[str, Any]:
    doc = repo.manifest(version, steps=[50, 100], interval="8s", **analysis)
    doc["spec"]["serving"] = {"replicas": 2, "gpu": {"count": 1}}
    return doc


async def test_cluster_weights_in_status_equal_served_pod_shares(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    """replicas 2, steps 50/100: at each step, once the pods have moved, the weight in status
    is the canary's share of Ready serving pods (what the user Service spreads requests over)."""
    await start_operator(with_metrics(FakeMetricsProvider(cs.HEALTHY)))
    await kube.apply_md(_gpu_manifest(model_repo, GOOD))
    await wait_phase(kube, "Promoted", version=GOOD, timeout_s=180)
    await kube.apply_md(_gpu_manifest(model_repo, CANDIDATE))
    seen: set[int] = set()
    last: list[Any] = []

    async def settled() -> bool:
        md = await kube.get_md(NAME) or {}
        status = md.get("status") or {}
        pods = await _ready_pods(kube)
        last[:] = [status.get("phase"), status.get("canaryWeight"), pods, status.get("message")]
        if status.get("phase") != "Progressing":
            return False
        total = pods["stable"] + pods["canary"]
        if total != 2:
            return False  # pods still moving between the tracks
        share = round(100 * pods["canary"] / total)
        if share == status.get("canaryWeight"):
            seen.add(share)
        return seen == {50, 100}

    try:
        await eventually(settled, timeout_s=180, every_s=0.3, what="weights 50 and 100 served")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; seen {seen}; last (phase, weight, pods, message) {last}"
        ) from None
    await wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=180)


async def test_cluster_promotion_fits_replicas_plus_one_gpus(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo, cluster: Cluster
) -> None:
    """A namespace GPU quota of replicas + maxSurge (3 for 2 replicas): the real API server
    refuses any pod beyond it, so a rollout that ever needed more would stall. It is
    promoted, and no pod was refused."""
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "gpus", "namespace": kube.namespace},
        "spec": {"hard": {"requests.nvidia.com/gpu": "3"}},
    }
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(quota))
    await start_operator(with_metrics(FakeMetricsProvider(cs.HEALTHY)))
    await kube.apply_md(_gpu_manifest(model_repo, GOOD))
    await wait_phase(kube, "Promoted", version=GOOD, timeout_s=180)
    await kube.apply_md(_gpu_manifest(model_repo, CANDIDATE))
    md = await wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=300)
    assert md["status"]["stableVersion"] == CANDIDATE
    refused = [
        e["message"]
        for e in await kube.client.list(kube.path("v1", "Event"))
        if e.get("reason") == "FailedCreate" and "exceeded quota" in e.get("message", "")
    ]
    assert refused == [], refused
    for pod in await kube.client.list(kube.path("v1", "Pod")):
        node = (pod.get("spec") or {}).get("nodeName") or ""
        assert node.startswith("gpu-node-"), (pod["metadata"]["name"], node)
