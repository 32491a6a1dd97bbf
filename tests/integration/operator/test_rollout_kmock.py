"""Rollouts on KMock with real serving backends; fault injection where it must be exact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tensorgate.metrics.fake import FakeMetricsProvider
from tests.helpers import eventually
from tests.integration.conftest import CANDIDATE, GOOD, ModelRepo
from tests.integration.operator import correctness_scenarios as cs
from tests.integration.operator import rollout_scenarios as rs
from tests.integration.operator.conftest import KubeEnv, OperatorStarter
from tests.integration.operator.kmock_player import playing

pytestmark = pytest.mark.tf


async def test_rollout_good_candidate_promoted(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    async with playing(kube):
        await start_operator()
        await rs.scenario_good_candidate_is_promoted(kube, model_repo)


async def test_rollout_broken_candidate_rolled_back_on_accuracy(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    async with playing(kube):
        await start_operator()
        await rs.scenario_broken_candidate_is_rolled_back(kube, model_repo)


async def test_rollout_golden_set_too_small_fails_before_any_canary_pod(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    async with playing(kube):
        await start_operator()
        await rs.scenario_golden_set_too_small_fails_before_any_pod(kube, model_repo)


async def test_rollout_error_rate_regression_during_step_rolls_back(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    async with playing(kube):
        await rs.scenario_error_rate_regression_rolls_back(kube, start_operator, model_repo)


async def test_rollout_operator_restart_mid_rollout_resumes_from_status(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    async with playing(kube):
        await rs.scenario_restart_mid_rollout_resumes(kube, start_operator, model_repo)


async def test_rollout_gateway_api_router_weights_the_httproute(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    provider = FakeMetricsProvider({("latency-p99", "canary"): 5.0, ("error-rate", "canary"): 0.0})
    traffic = {"router": "gateway-api", "parentRefs": [{"name": "public", "namespace": "gw"}]}

    def manifest(version: str) -> dict[str, Any]:
        doc = model_repo.manifest(version, steps=[50, 100], interval="3s")
        doc["spec"]["traffic"] = traffic
        return doc

    route_path = kube.path("gateway.networking.k8s.io/v1", "HTTPRoute", rs.NAME)

    async def weights() -> dict[str, int]:
        route = await kube.client.get(route_path) or {"spec": {"rules": [{"backendRefs": []}]}}
        refs = route["spec"]["rules"][0]["backendRefs"]
        return {r["name"].rsplit("-", 1)[-1]: r["weight"] for r in refs}

    async def canary_at(weight: int) -> dict[str, int] | None:
        seen = await weights()
        return seen if seen.get("canary") == weight else None

    async with playing(kube):
        await start_operator(rs.with_metrics(provider))
        await kube.apply_md(manifest(GOOD))
        await rs.wait_phase(kube, "Promoted", version=GOOD)
        assert await weights() == {"stable": 100, "canary": 0}
        await kube.apply_md(manifest(CANDIDATE))
        halfway = await eventually(lambda: canary_at(50), timeout_s=120, what="canary at 50%")
        assert halfway == {"stable": 50, "canary": 50}
        await rs.wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=120)
        assert await weights() == {"stable": 100, "canary": 0}
    route = await kube.client.get(route_path)
    assert route is not None
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "gw"}]
    assert route["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"


# --- correct rollouts: revisions, commands, deadlines, concurrent writers ------------------


async def test_kmock_every_phase_reaches_status_and_ledger(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo, tmp_path: Path
) -> None:
    async with playing(kube):
        await cs.scenario_every_phase_reaches_status(
            kube, start_operator, model_repo, f"sqlite:///{tmp_path / 'ledger.db'}"
        )


async def test_kmock_commands_act_from_paused(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    async with playing(kube):
        await cs.scenario_commands_from_paused(kube, start_operator, model_repo, within_s=10)


async def test_kmock_stuck_smoke_ends_at_its_deadline(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    async with playing(kube):
        await cs.scenario_stuck_smoke_ends_at_deadline(kube, start_operator, model_repo)


async def test_kmock_same_version_uri_edit_is_gated_again(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    async with playing(kube):
        await cs.scenario_same_version_uri_edit_is_gated_again(kube, start_operator, model_repo)
