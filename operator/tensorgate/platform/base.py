"""The edges where models run and where traffic goes: one Protocol each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from tensorgate.api.spec import ModelDeploymentSpec, ModelRef
from tensorgate.engine.rollout import TrackObservation

Body = Mapping[str, Any]


class Platform(Protocol):
    """Runs serving tracks (Kubernetes Deployments, or local processes)."""

    async def apply_track(
        self,
        body: Body,
        spec: ModelDeploymentSpec,
        track: str,
        model: ModelRef,
        replicas: int,
        *,
        revision: str | None = None,
    ) -> None:
        """Create or scale a track so it serves ``model`` at ``revision`` on ``replicas``
        servers (zero keeps the track with no servers)."""

    async def delete_track(self, body: Body, track: str) -> None:
        """Remove a track (no error when it is already gone)."""

    async def observe(self, body: Body, track: str) -> TrackObservation:
        """Readiness, version and scheduling problems of a track."""

    async def endpoints(self, body: Body, track: str) -> list[str]:
        """``host:port`` REST addresses of a track's ready servers."""

    async def read_golden(self, body: Body, spec: ModelDeploymentSpec) -> bytes:
        """The golden set's ``.npz`` bytes (ConfigError when it cannot be read here)."""


class ReportStore(Protocol):
    """Keeps the latest gate report page of each ModelDeployment where people can read it."""

    async def publish_report(self, body: Body, html: str) -> str:
        """Store ``html`` as this object's gate report (replacing the previous one); returns
        the name people find it by (a ConfigMap name in a cluster)."""


class TrafficRouter(Protocol):
    """Splits user traffic between the stable and canary tracks."""

    async def route(self, body: Body, spec: ModelDeploymentSpec, weight: int) -> None:
        """Send ``weight`` percent of user requests to the canary track."""
