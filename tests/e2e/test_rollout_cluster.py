"""Rollouts on the real control plane: the same bodies as on KMock, pods played for real.

The Deployment controller makes the pods, the scheduler places them, the pod player serves
each pod's model on its pod IP with real TensorFlow, the EndpointSlice controller publishes the
ready ones, and the operator (with its ServiceAccount token) finds them there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml

from tests.e2e.conftest import Cluster, OperatorStarter
from tests.helpers import eventually
from tests.integration.conftest import BROKEN, CANDIDATE, GOOD, ModelRepo
from tests.integration.operator import rollout_scenarios as rs
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.load import load
from tests.models import DIGITS

pytestmark = [pytest.mark.cluster, pytest.mark.tf]


async def test_cluster_rollout_good_candidate_promoted(
    kube: KubeEnv, operator: object, model_repo: ModelRepo
) -> None:
    await rs.scenario_good_candidate_is_promoted(kube, model_repo)


async def test_cluster_rollout_broken_candidate_rolled_back(
    kube: KubeEnv, operator: object, model_repo: ModelRepo
) -> None:
    await rs.scenario_broken_candidate_is_rolled_back(kube, model_repo)


async def test_cluster_rollout_golden_set_too_small_fails_before_any_canary_pod(
    kube: KubeEnv, operator: object, model_repo: ModelRepo
) -> None:
    await rs.scenario_golden_set_too_small_fails_before_any_pod(kube, model_repo)


async def test_cluster_rollout_error_rate_regression_during_step_rolled_back(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    await rs.scenario_error_rate_regression_rolls_back(kube, start_operator, model_repo)


async def test_cluster_rollout_operator_restart_mid_rollout_resumes_from_status(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    await rs.scenario_restart_mid_rollout_resumes(kube, start_operator, model_repo)


async def test_cluster_kubectl_apply_broken_then_good_v2(
    kube: KubeEnv, operator: object, cluster: Cluster, model_repo: ModelRepo
) -> None:
    """What a user does: kubectl apply v1, then a silently broken v2 (RolledBack, the reason in
    status and in Events), then a good v2 (Promoted)."""

    def apply(version: str) -> None:
        doc = model_repo.manifest(version)
        doc["metadata"]["namespace"] = kube.namespace
        out = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
        assert "modeldeployment.tensorgate.dev/digits" in out.stdout, out

    apply(GOOD)
    await rs.wait_phase(kube, "Promoted", version=GOOD)
    apply(BROKEN)
    md = await rs.wait_phase(kube, "RolledBack", timeout_s=120)
    degraded = rs.condition(md, "Degraded")
    assert degraded is not None and degraded["reason"] == "AccuracyGateFailed", degraded
    assert md["status"]["stableVersion"] == GOOD

    async def event_of(reason: str) -> dict[str, Any] | None:
        for event in await kube.client.list(kube.path("v1", "Event")):
            involved = event.get("involvedObject") or {}
            if involved.get("name") == rs.NAME and event.get("reason") == reason:
                return event
        return None

    event = await eventually(lambda: event_of("AccuracyGateFailed"), timeout_s=30, what="Event")
    assert event["type"] == "Warning" and "maxAccuracyDrop" in event["message"], event
    got = cluster.kubectl("get", "md", rs.NAME, "-n", kube.namespace)
    assert "RolledBack" in got.stdout, got.stdout

    rows = np.load(model_repo.golden)[DIGITS.input_name]
    async with load(kube, rs.NAME, DIGITS.name, rows, DIGITS.input_name) as sent:
        apply(CANDIDATE)  # metric checks need user traffic: no data fails a check
        md = await rs.wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=120)
    assert sent["canary"] > 0, sent
    assert md["status"]["stableVersion"] == CANDIDATE
    assert await eventually(lambda: event_of("Promoted"), timeout_s=30, what="Promoted Event")
