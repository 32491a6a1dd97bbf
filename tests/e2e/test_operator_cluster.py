"""The foundation's operator scenarios on a real control plane, with the same bodies as KMock."""

from __future__ import annotations

import pytest

from tests.integration.operator import scenarios
from tests.integration.operator.conftest import KubeEnv

pytestmark = pytest.mark.cluster

TIMEOUT_S = 90  # pods are scheduled, played and made Ready for real


async def test_cluster_create_becomes_ready(kube: KubeEnv, operator: object) -> None:
    await scenarios.scenario_create_becomes_ready(kube, TIMEOUT_S)


async def test_cluster_invalid_spec_rejected_and_creates_nothing(
    kube: KubeEnv, operator: object
) -> None:
    await scenarios.scenario_invalid_spec_creates_nothing(kube, TIMEOUT_S)


async def test_cluster_version_update_starts_canary(kube: KubeEnv, operator: object) -> None:
    await scenarios.scenario_version_update_changes_deployment(kube, TIMEOUT_S)
