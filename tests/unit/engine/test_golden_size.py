"""A golden set too small to ever promote fails the rollout before any pod starts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tensorgate.api.reasons import ConditionType, Phase, Reason
from tensorgate.engine.golden_size import golden_set_shortfall
from tensorgate.engine.rollout import ApplyTrack, decide
from tensorgate.engine.stats import minimum_samples
from tests.unit.engine.conftest import make_obs, make_spec, make_status

NEEDED = minimum_samples(0.02, 0.95)


@pytest.mark.parametrize(
    ("rows", "too_small"),
    [
        pytest.param(None, False, id="unknown-size-proceeds"),
        pytest.param(NEEDED, False, id="exactly-min-samples-proceeds"),
        pytest.param(NEEDED - 1, True, id="one-below-min-samples-fails"),
        pytest.param(100, True, id="hundred-rows-fails"),
    ],
)
def test_golden_set_shortfall_at_the_planner_boundary(rows: int | None, too_small: bool) -> None:
    message = golden_set_shortfall(make_spec(maxAccuracyDrop=0.02, confidence=0.95), rows)
    assert (message is not None) is too_small


def test_golden_set_shortfall_message_names_the_numbers() -> None:
    message = golden_set_shortfall(make_spec(maxAccuracyDrop=0.02, confidence=0.95), 100)
    assert message is not None
    assert "golden set has 100 rows" in message
    assert "maxAccuracyDrop 0.02 and confidence 0.95" in message
    assert f"below {NEEDED}" in message and "add rows or raise maxAccuracyDrop" in message


def test_start_rollout_golden_set_too_small_fails_before_any_canary_pod() -> None:
    """The decision that would start the rollout rolls back at once: stable keeps serving,
    no canary ApplyTrack, a Warning Event and Degraded=True with the numbers."""
    spec = make_spec("2")
    obs = replace(make_obs(spec), golden_rows=100)
    d = decide(make_status(Phase.PROMOTED), obs)
    assert d.status.phase == Phase.ROLLED_BACK
    assert d.status.canary_revision == obs.revision  # held until the spec changes or retry
    assert not any(isinstance(e, ApplyTrack) and e.track == "canary" for e in d.effects)
    assert d.event is not None and d.event.warning
    assert d.event.reason == Reason.GOLDEN_SET_TOO_SMALL and "100 rows" in d.event.message
    degraded = next(c for c in d.conditions if c.type == ConditionType.DEGRADED)
    assert degraded.is_true and degraded.reason == Reason.GOLDEN_SET_TOO_SMALL
    assert d.status.history[0].reason.startswith("GoldenSetTooSmall")
    # the next decision holds it: nothing is retried behind the user's back
    again = decide(d.status, replace(obs, golden_rows=None))
    assert again.status.phase == Phase.ROLLED_BACK
    assert not any(isinstance(e, ApplyTrack) and e.track == "canary" for e in again.effects)


def test_start_rollout_golden_set_large_enough_deploys_the_canary() -> None:
    spec = make_spec("2")
    d = decide(make_status(Phase.PROMOTED), replace(make_obs(spec), golden_rows=NEEDED))
    assert d.status.phase == Phase.DEPLOYING
    assert any(isinstance(e, ApplyTrack) and e.track == "canary" for e in d.effects)


def test_retry_with_a_golden_set_still_too_small_fails_again() -> None:
    spec = make_spec("2")
    obs = replace(make_obs(spec), golden_rows=100)
    failed = decide(make_status(Phase.PROMOTED), obs).status
    d = decide(failed, replace(obs, command=make_obs(spec, command="retry").command))
    assert d.status.phase == Phase.ROLLED_BACK
    assert d.event is not None and d.event.reason == Reason.GOLDEN_SET_TOO_SMALL


def test_superseding_rollout_to_a_too_small_golden_set_starts_no_canary() -> None:
    """A rollout in flight superseded by a revision whose golden set is too small: the old
    canary goes, no new one is created, and the new revision is held as rolled back."""
    old = make_obs(make_spec("2"))
    in_flight = make_status(Phase.PROGRESSING, canary="2", step=0, canary_revision=old.revision)
    obs = replace(make_obs(make_spec("3")), golden_rows=50)
    d = decide(in_flight, obs)
    assert d.status.phase == Phase.ROLLED_BACK and d.status.canary_revision == obs.revision
    assert not any(isinstance(e, ApplyTrack) and e.track == "canary" for e in d.effects)
    assert d.event is not None and "golden set has 50 rows" in d.event.message
    assert d.event.warning  # a Warning, though its reason is Superseded
    degraded = next(c for c in d.conditions if c.type == ConditionType.DEGRADED)
    assert degraded.reason == Reason.GOLDEN_SET_TOO_SMALL
