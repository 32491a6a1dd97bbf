"""True weights and the GPU budget: a whole rollout driven through ``decide`` on a simulated
cluster whose pods take one decision to become Ready."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tensorgate.api.reasons import Phase
from tensorgate.api.spec import parse_spec
from tensorgate.api.status import ModelDeploymentStatus
from tensorgate.engine.effects import ApplyTrack, DeleteCanary, RunAnalysis, RunComparison, RunSmoke
from tensorgate.engine.replicas import TrackObservation, split
from tensorgate.engine.revision import rollout_revision
from tensorgate.engine.rollout import Observations, decide, record_check_results
from tests.unit.engine.conftest import T0, passed


@dataclass
class SimTrack:
    version: str = ""
    revision: str | None = None
    desired: int = 0
    ready: int = 0
    exists: bool = False

    def observe(self) -> TrackObservation:
        if not self.exists:
            return TrackObservation()
        return TrackObservation(
            exists=True,
            version=self.version,
            revision=self.revision,
            desired=self.desired,
            ready=min(self.ready, self.desired),
            updated=self.desired,
            pods=self.desired,
        )


@dataclass
class SimCluster:
    tracks: dict[str, SimTrack] = field(
        default_factory=lambda: {"stable": SimTrack(), "canary": SimTrack()}
    )
    peak: int = 0

    def apply(self, effect: ApplyTrack) -> None:
        t = self.tracks[effect.track]
        if t.revision != effect.revision:  # a new pod template: new pods, none ready yet
            t.ready = 0
        t.exists, t.version, t.revision, t.desired = (
            True,
            effect.model.version,
            effect.revision,
            effect.replicas,
        )

    def tick(self) -> None:
        """Pods that exist become Ready by the next decision."""
        self.peak = max(self.peak, sum(t.desired for t in self.tracks.values() if t.exists))
        for t in self.tracks.values():
            t.ready = t.desired


def spec_for(version: str, replicas: int, surge: int, steps: list[int]) -> object:
    return parse_spec(
        {
            "model": {"name": "m", "version": version, "uri": "gs://b/m"},
            "serving": {"replicas": replicas, "maxSurge": surge},
            "contract": {
                "inputs": {"x": {"dtype": "float32", "shape": [-1, 4]}},
                "outputs": {"p": {"dtype": "float32", "shape": [-1, 3]}},
            },
            "analysis": {"steps": steps, "interval": "10s"},
        }
    )


def run_rollout(
    replicas: int, surge: int, steps: list[int]
) -> tuple[SimCluster, list[tuple[int, int]]]:
    """v1 to Promoted, then v2 through every step: (cluster, (status weight, served pod
    share) when each step is judged)."""
    cluster = SimCluster()
    status = ModelDeploymentStatus()
    now = T0
    shares: list[tuple[int, int]] = []
    for version in ("1", "2"):
        spec = spec_for(version, replicas, surge, steps)
        for _ in range(400):
            obs = Observations(
                spec=spec,  # type: ignore[arg-type]
                generation=int(version),
                now=now,
                revision=rollout_revision(spec),  # type: ignore[arg-type]
                stable=cluster.tracks["stable"].observe(),
                canary=cluster.tracks["canary"].observe(),
            )
            d = decide(status, obs)
            status = d.status
            for e in d.effects:
                if isinstance(e, ApplyTrack):
                    cluster.apply(e)
                elif isinstance(e, DeleteCanary):
                    cluster.tracks["canary"] = SimTrack()
                elif isinstance(e, RunSmoke):
                    gate = status.gate.model_copy(update={"smoke_passed": True})  # type: ignore[union-attr]
                    status = status.model_copy(update={"gate": gate})
                elif isinstance(e, RunComparison):
                    gate = status.gate.model_copy(update={"compared": True, "decision": "promote"})  # type: ignore[union-attr]
                    status = status.model_copy(update={"gate": gate})
                elif isinstance(e, RunAnalysis):  # the step is judged: at what weight?
                    s, c = cluster.tracks["stable"], cluster.tracks["canary"]
                    share = round(100 * c.ready / (s.ready + c.ready))
                    shares.append((status.canary_weight or 0, share))
                    status = record_check_results(status, e.step, [passed()])
            cluster.tick()
            now += timedelta(seconds=5)
            if status.phase == Phase.PROMOTED and status.stable_version == version:
                break
        else:
            raise AssertionError(f"stuck in {status.phase}: {status.message}")
    return cluster, shares


@settings(max_examples=60, deadline=None)
@given(
    replicas=st.integers(1, 8),
    surge=st.integers(1, 3),
    steps=st.lists(st.integers(1, 99), min_size=0, max_size=4, unique=True).map(
        lambda s: [*sorted(s), 100]
    ),
)
def test_rollout_never_runs_more_than_replicas_plus_surge_pods(
    replicas: int, surge: int, steps: list[int]
) -> None:
    cluster, shares = run_rollout(replicas, surge, steps)
    assert cluster.peak <= replicas + surge, (cluster.peak, replicas, surge)
    assert cluster.tracks["stable"].version == "2"
    assert not cluster.tracks["canary"].exists
    assert len(shares) == len(steps)
    for (weight, share), step in zip(shares, steps, strict=True):
        # Each step is judged once its pods have moved: status says what the pods serve, and
        # that is the step's weight within one pod.
        assert weight == share, shares
        assert abs(share - step) <= 100 / replicas or replicas == 1, (step, shares)


def test_four_replicas_with_steps_10_50_100_serve_25_50_100() -> None:
    cluster, shares = run_rollout(4, 1, [10, 50, 100])
    assert shares == [(25, 25), (50, 50), (100, 100)]
    assert cluster.peak == 5


@pytest.mark.parametrize(
    ("total", "weight", "stable", "canary"),
    [(4, 10, 3, 1), (4, 50, 2, 2), (4, 100, 0, 4), (10, 25, 8, 2), (1, 10, 1, 1), (3, 34, 2, 1)],
)
def test_split_keeps_a_pod_on_each_side_below_100(
    total: int, weight: int, stable: int, canary: int
) -> None:
    got = split(total, weight)
    assert (got.stable, got.canary) == (stable, canary)
