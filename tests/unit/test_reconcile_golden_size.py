"""The reconciler reads the golden set's size when a rollout starts, and a set too small to
ever promote fails the rollout before any canary pod is created (fake platform)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from tensorgate.api.spec import ModelDeploymentSpec
from tensorgate.engine.stats import minimum_samples
from tensorgate.platform.base import Body
from tensorgate.platform.fake import FakePlatform, FakeRouter
from tensorgate.reconcile import Reconciler
from tests.unit.test_reconcile import ScriptedChecker, StepClock, body_for, drive


def npz(rows: int) -> bytes:
    out = io.BytesIO()
    np.savez(out, x=np.zeros((rows, 4), np.float32), labels=np.zeros(rows, np.int64))
    return out.getvalue()


@dataclass
class CountingPlatform(FakePlatform):
    reads: int = 0

    async def read_golden(self, body: Body, spec: ModelDeploymentSpec) -> bytes:
        self.reads += 1
        return await super().read_golden(body, spec)


def rig(golden: bytes) -> tuple[CountingPlatform, ScriptedChecker, StepClock, Reconciler]:
    platform, checker, clock = CountingPlatform(golden=golden), ScriptedChecker(), StepClock()
    return (
        platform,
        checker,
        clock,
        Reconciler(platform, {"replicas": FakeRouter()}, checker, clock),
    )


async def test_reconcile_golden_set_too_small_fails_before_any_canary_pod() -> None:
    platform, checker, clock, r = rig(npz(100))
    status = await drive(r, clock, "1", {}, 1, {"Promoted"})
    assert platform.reads == 0  # a first deploy has no gate
    outcome = await r.reconcile(body_for("2", status, 2))
    assert outcome.status["phase"] == "RolledBack"
    assert not any("canary" in c for c in platform.calls)  # no ApplyTrack of a canary
    assert checker.calls == []
    (event,) = outcome.events
    assert event.warning and event.reason == "GoldenSetTooSmall"
    needed = minimum_samples(0.02, 0.95)
    assert "golden set has 100 rows" in event.message and f"below {needed}" in event.message
    degraded = next(c for c in outcome.status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "GoldenSetTooSmall"
    stalled = next(c for c in outcome.status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    # held, and the size is not read again on the decisions that follow
    again = await r.reconcile(body_for("2", outcome.status, 2))
    assert again.status["phase"] == "RolledBack" and platform.reads == 1
    assert not any("canary" in c for c in platform.calls)


async def test_reconcile_golden_set_large_enough_is_read_once_and_rolls_out() -> None:
    needed = minimum_samples(0.02, 0.95)
    platform, _, clock, r = rig(npz(needed))
    status = await drive(r, clock, "1", {}, 1, {"Promoted"})
    status = await drive(r, clock, "2", status, 2, {"Promoted"}, ticks=60)
    assert status["stableVersion"] == "2"
    assert platform.reads == 1  # once, when the rollout started; the checker reads its own


async def test_reconcile_unreadable_golden_set_does_not_block_the_rollout() -> None:
    platform, _, clock, r = rig(b"not a zip")
    status = await drive(r, clock, "1", {}, 1, {"Promoted"})
    outcome = await r.reconcile(body_for("2", status, 2))
    assert outcome.status["phase"] == "Deploying"
    assert "apply canary v2 x1" in platform.calls
