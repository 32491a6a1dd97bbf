"""Rollouts on KMock with real serving backends; fault injection where it must be exact."""

from __future__ import annotations

from typing import Any

import pytest

from tensorgate.checks import PlatformChecker
from tensorgate.metrics.fake import FakeMetricsProvider
from tensorgate.platform.kubernetes.client import KubeClient
from tensorgate.platform.kubernetes.platform import KubernetesPlatform
from tensorgate.runner import build_reconciler
from tensorgate.settings import Settings
from tests.integration.conftest import CANDIDATE, GOOD, ModelRepo
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


def with_metrics(provider: FakeMetricsProvider) -> Any:
    def make(client: KubeClient, settings: Settings) -> Any:
        checker = PlatformChecker(KubernetesPlatform(client), {"scrape": provider})
        return build_reconciler(client, settings, checker)

    return make


async def test_rollout_error_rate_regression_during_step_rolls_back(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    provider = FakeMetricsProvider({("latency-p99", "canary"): 5.0, ("error-rate", "canary"): 0.25})
    async with playing(kube):
        await start_operator(with_metrics(provider))
        await rs.deploy_stable(kube, model_repo)
        await kube.apply_md(model_repo.manifest(CANDIDATE))
        md = await rs.wait_phase(kube, "RolledBack", timeout_s=120)
    status = md["status"]
    assert status["stableVersion"] == GOOD
    degraded = rs.condition(md, "Degraded")
    assert degraded is not None and degraded["reason"] == "MetricCheckFailed"
    assert "error-rate 0.25 > max 0.01" in degraded["message"]
    assert status["gate"]["decision"] == "promote"  # it passed the gate, failed live
    failed = [c for c in status["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["error-rate"]


async def test_rollout_operator_restart_mid_rollout_resumes_from_status(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo
) -> None:
    provider = FakeMetricsProvider({("latency-p99", "canary"): 5.0, ("error-rate", "canary"): 0.0})
    async with playing(kube):
        first = await start_operator(with_metrics(provider))
        await rs.deploy_stable(kube, model_repo, steps=[20, 60, 100], interval="3s")
        await kube.apply_md(model_repo.manifest(CANDIDATE, steps=[20, 60, 100], interval="3s"))
        md = await rs.wait_phase(kube, "Progressing", timeout_s=120)
        rollout_id = md["status"]["rolloutId"]
        await first.shutdown()
        before = (await kube.get_md(rs.NAME) or {})["status"]
        assert before["phase"] == "Progressing"
        await start_operator(with_metrics(provider))
        md = await rs.wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=120)
    status = md["status"]
    assert status["rolloutId"] == rollout_id  # the same rollout went on, not a new one
    assert [h["decision"] for h in status["history"]] == ["Promoted"]
    assert status["gate"]["samples"] == 600
