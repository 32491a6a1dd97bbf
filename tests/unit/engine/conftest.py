"""Builders for engine table tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tensorgate.api.reasons import Phase
from tensorgate.api.spec import ModelDeploymentSpec, parse_spec
from tensorgate.api.status import CheckResult, GateStatus, ModelDeploymentStatus, StableModel
from tensorgate.engine.effects import CommandRequest
from tensorgate.engine.revision import rollout_revision
from tensorgate.engine.rollout import Observations, TrackObservation

T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
URI = "gs://b/mnist"


def make_spec(version: str = "2", **analysis: Any) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {
        "model": {"name": "mnist", "version": version, "uri": URI},
        "serving": {"replicas": 4},
        "contract": {
            "inputs": {"x": {"dtype": "float32", "shape": [-1, 4]}},
            "outputs": {"p": {"dtype": "float32", "shape": [-1, 3], "kind": "probabilities"}},
        },
        "goldenSet": {"uri": "/golden.npz"},
        "analysis": {"steps": [10, 50, 100], "interval": "60s", "failureLimit": 2, **analysis},
    }
    return parse_spec(raw)


def make_status(
    phase: Phase | None = Phase.PROMOTED,
    *,
    stable: str | None = "1",
    canary: str | None = None,
    step: int | None = None,
    started: datetime = T0,
    **extra: Any,
) -> ModelDeploymentStatus:
    stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    fields: dict[str, Any] = {"phase": phase, "phase_started_at": stamp}
    if stable:
        fields["stable_model"] = StableModel(name="mnist", version=stable, uri=URI)
        fields["stable_version"] = stable
    if canary:
        fields["canary_version"] = canary
        fields["gate"] = GateStatus(version=canary)
        fields["canary_weight"] = 0
    if step is not None:
        fields["current_step"] = step
        fields["canary_weight"] = [10, 50, 100][step]
        fields["step_started_at"] = stamp
    fields.update(extra)
    return ModelDeploymentStatus(**fields)


def ready(version: str, n: int = 4) -> TrackObservation:
    return TrackObservation(exists=True, version=version, desired=n, ready=n, updated=n, pods=n)


def make_obs(
    spec: ModelDeploymentSpec | None = None,
    *,
    after_s: float = 0,
    stable: TrackObservation | None = None,
    canary: TrackObservation | None = None,
    command: str | CommandRequest | None = None,
    generation: int = 2,
) -> Observations:
    spec = spec or make_spec()
    if isinstance(command, str):
        command = CommandRequest(id=f"id-{command}", name=command)
    return Observations(
        spec=spec,
        generation=generation,
        now=T0 + timedelta(seconds=after_s),
        revision=rollout_revision(spec),
        stable=stable or ready("1"),
        canary=canary or TrackObservation(),
        command=command,
    )


def track(version: str, desired: int = 1, ready_pods: int = 0) -> TrackObservation:
    """A track of ``desired`` pods, ``ready_pods`` of them Ready."""
    return TrackObservation(
        exists=True,
        version=version,
        desired=desired,
        ready=ready_pods,
        updated=desired,
        pods=desired,
    )


def passed(name: str = "error-rate") -> CheckResult:
    return CheckResult(name=name, passed=True, message=f"{name} 0.001 <= max 0.01")


def failed(name: str = "error-rate") -> CheckResult:
    return CheckResult(name=name, passed=False, message=f"{name} 0.2 > max 0.01")
