"""Rollouts on KMock with real serving backends; fault injection where it must be exact."""

from __future__ import annotations

import pytest

from tests.integration.conftest import ModelRepo
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
