"""The foundation's operator scenarios on KMock (fast; exact fault injection)."""

from __future__ import annotations

from tests.integration.operator import scenarios
from tests.integration.operator.conftest import KubeEnv


async def test_operator_create_becomes_ready(kube: KubeEnv, operator: object) -> None:
    await scenarios.scenario_create_becomes_ready(kube)


async def test_operator_invalid_spec_sets_condition_and_creates_nothing(
    kube: KubeEnv, operator: object
) -> None:
    await scenarios.scenario_invalid_spec_creates_nothing(kube)


async def test_operator_version_update_starts_canary(kube: KubeEnv, operator: object) -> None:
    await scenarios.scenario_version_update_changes_deployment(kube)
