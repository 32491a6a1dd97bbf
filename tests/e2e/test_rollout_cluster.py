"""Rollouts on the real control plane: the same bodies as on KMock, pods played for real.

The Deployment controller makes the pods, the scheduler places them, the pod player serves
each pod's model on its pod IP with real TensorFlow, the EndpointSlice controller publishes the
ready ones, and the operator (with its ServiceAccount token) finds them there.
"""

from __future__ import annotations

import pytest

from tests.integration.conftest import ModelRepo
from tests.integration.operator import rollout_scenarios as rs
from tests.integration.operator.conftest import KubeEnv

pytestmark = [pytest.mark.cluster, pytest.mark.tf]


async def test_cluster_rollout_good_candidate_promoted(
    kube: KubeEnv, operator: object, model_repo: ModelRepo
) -> None:
    await rs.scenario_good_candidate_is_promoted(kube, model_repo)


async def test_cluster_rollout_broken_candidate_rolled_back(
    kube: KubeEnv, operator: object, model_repo: ModelRepo
) -> None:
    await rs.scenario_broken_candidate_is_rolled_back(kube, model_repo)
