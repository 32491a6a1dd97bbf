"""In-memory ``Platform`` and ``TrafficRouter`` for fast tests of the reconcile loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from tensorgate.api.spec import ModelDeploymentSpec, ModelRef
from tensorgate.engine.rollout import TrackObservation
from tensorgate.platform.base import Body


@dataclass
class FakePlatform:
    """Tracks become ready at once unless ``ready`` says otherwise; calls are recorded."""

    ready: bool = True
    golden: bytes | None = None
    tracks: dict[str, tuple[ModelRef, int]] = field(default_factory=dict)
    revisions: dict[str, str | None] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    reports: dict[str, str] = field(default_factory=dict)
    report_error: Exception | None = None

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
        if self.tracks.get(track) != (model, replicas):
            self.calls.append(f"apply {track} v{model.version} x{replicas}")
        self.tracks[track] = (model, replicas)
        self.revisions[track] = revision

    async def delete_track(self, body: Body, track: str) -> None:
        if self.tracks.pop(track, None) is not None:
            self.calls.append(f"delete {track}")

    async def observe(self, body: Body, track: str) -> TrackObservation:
        if track not in self.tracks:
            return TrackObservation()
        model, replicas = self.tracks[track]
        n = replicas if self.ready else 0
        return TrackObservation(
            exists=True,
            version=model.version,
            revision=self.revisions.get(track),
            desired=replicas,
            ready=n,
            updated=replicas,
            pods=replicas,
        )

    async def endpoints(self, body: Body, track: str) -> list[str]:
        return [f"127.0.0.1:{8501 if track == 'stable' else 9501}"] if track in self.tracks else []

    async def read_golden(self, body: Body, spec: ModelDeploymentSpec) -> bytes:
        from tensorgate.errors import ConfigError

        if self.golden is None:
            raise ConfigError("spec.goldenSet: no such file")
        return self.golden

    async def publish_report(self, body: Body, html: str) -> str:
        """Implements ``ReportStore``: keeps the page by the ConfigMap name a cluster uses."""
        if self.report_error is not None:
            raise self.report_error
        name = f"{body['metadata']['name']}-gate-report"
        self.reports[name] = html
        self.calls.append(f"report {name}")
        return name


@dataclass
class FakeRouter:
    weights: list[int] = field(default_factory=list)

    async def route(self, body: Body, spec: ModelDeploymentSpec, weight: int) -> None:
        if not self.weights or self.weights[-1] != weight:
            self.weights.append(weight)
