"""The rollout's slow checks against the cluster: smoke, golden set, metrics."""

from __future__ import annotations

from tensorgate.api.spec import ModelDeploymentSpec
from tensorgate.api.status import CheckResult, GateStatus
from tensorgate.errors import ServingError
from tensorgate.platform.base import Body, Platform
from tensorgate.settings import Settings


class ClusterChecker:
    """Implements ``reconcile.Checker`` over REST to the tracks' serving pods."""

    def __init__(self, platform: Platform, settings: Settings) -> None:
        self._platform = platform
        self._settings = settings

    async def smoke(self, body: Body, spec: ModelDeploymentSpec, track: str) -> GateStatus:
        raise ServingError("smoke inference is not wired into the operator yet")

    async def compare(
        self, body: Body, spec: ModelDeploymentSpec, gate: GateStatus
    ) -> GateStatus:
        raise ServingError("golden-set comparison is not wired into the operator yet")

    async def analyse(
        self, body: Body, spec: ModelDeploymentSpec, weight: int
    ) -> list[CheckResult]:
        raise ServingError("metric analysis is not wired into the operator yet")
