"""The rollout state machine, as tables of (state, observations) -> decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tensorgate.api.reasons import Phase, Reason
from tensorgate.api.status import CheckResult, GateStatus
from tensorgate.engine.rollout import (
    ApplyTrack,
    BeginAnalysis,
    Command,
    DeleteCanary,
    Observations,
    Route,
    RunAnalysis,
    RunComparison,
    RunSmoke,
    TrackObservation,
    canary_replicas,
    decide,
    record_check_results,
)
from tests.unit.engine.conftest import (
    failed,
    make_obs,
    make_spec,
    make_status,
    passed,
    ready,
)


@dataclass
class Case:
    id: str
    status: Any
    obs: Observations
    phase: Phase
    effects: tuple[type, ...] = ()
    reason: Reason | None = None
    weight: int | None = None


def gate(**kw: Any) -> GateStatus:
    return GateStatus(version="2", **kw)


CASES = [
    Case(
        "first-deploy-creates-stable",
        make_status(None, stable=None),
        make_obs(make_spec("1"), stable=TrackObservation()),
        Phase.DEPLOYING,
        (ApplyTrack, Route),
        Reason.DEPLOYING,
    ),
    Case(
        "first-deploy-waits-for-pods",
        make_status(Phase.DEPLOYING, stable=None),
        make_obs(make_spec("1"), stable=TrackObservation(True, "1", 4, 2, 4)),
        Phase.DEPLOYING,
        (ApplyTrack,),
    ),
    Case(
        "first-deploy-ready-is-promoted",
        make_status(Phase.DEPLOYING, stable=None),
        make_obs(make_spec("1"), stable=ready("1")),
        Phase.PROMOTED,
        (ApplyTrack,),
        Reason.AVAILABLE,
    ),
    Case(
        "steady-state-keeps-stable",
        make_status(),
        make_obs(make_spec("1")),
        Phase.PROMOTED,
        (ApplyTrack, DeleteCanary, Route),
    ),
    Case(
        "new-version-starts-canary-at-zero",
        make_status(),
        make_obs(),
        Phase.DEPLOYING,
        (ApplyTrack, ApplyTrack, Route),
        Reason.DEPLOYING,
        0,
    ),
    Case(
        "canary-not-ready-waits",
        make_status(Phase.DEPLOYING, canary="2"),
        make_obs(after_s=30, canary=TrackObservation(True, "2", 1, 0, 1)),
        Phase.DEPLOYING,
        (ApplyTrack,),
    ),
    Case(
        "canary-readiness-timeout-rolls-back",
        make_status(Phase.DEPLOYING, canary="2"),
        make_obs(after_s=601, canary=TrackObservation(True, "2", 1, 0, 1)),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
        Reason.READINESS_TIMEOUT,
        0,
    ),
    Case(
        "canary-ready-runs-smoke",
        make_status(Phase.DEPLOYING, canary="2"),
        make_obs(canary=ready("2", 1)),
        Phase.SMOKE_TESTING,
        (ApplyTrack, ApplyTrack, RunSmoke),
        Reason.SMOKE_TESTING,
    ),
    Case(
        "smoke-failure-rolls-back",
        make_status(
            Phase.SMOKE_TESTING,
            canary="2",
            gate=gate(
                smoke_passed=False,
                smoke=[
                    CheckResult(name="batch-invariance", passed=False, message="sample 3 differs")
                ],
            ),
        ),
        make_obs(canary=ready("2", 1)),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
        Reason.SMOKE_TEST_FAILED,
        0,
    ),
    Case(
        "smoke-pass-runs-golden-set",
        make_status(Phase.SMOKE_TESTING, canary="2", gate=gate(smoke_passed=True)),
        make_obs(canary=ready("2", 1)),
        Phase.EVALUATING,
        (ApplyTrack, ApplyTrack, RunComparison),
        Reason.SMOKE_TEST_PASSED,
    ),
    Case(
        "accuracy-below-margin-rolls-back",
        make_status(
            Phase.EVALUATING,
            canary="2",
            gate=gate(
                smoke_passed=True,
                compared=True,
                decision="rollback",
                reasons=["upper bound 0.83 > maxAccuracyDrop 0.02"],
            ),
        ),
        make_obs(canary=ready("2", 1)),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
        Reason.ACCURACY_GATE_FAILED,
        0,
    ),
    Case(
        "accuracy-pass-starts-first-step",
        make_status(
            Phase.EVALUATING,
            canary="2",
            gate=gate(smoke_passed=True, compared=True, decision="promote"),
        ),
        make_obs(canary=ready("2", 1)),
        Phase.PROGRESSING,
        (ApplyTrack, ApplyTrack, Route, BeginAnalysis),
        Reason.ACCURACY_GATE_PASSED,
        10,
    ),
    Case(
        "step-waits-for-interval",
        make_status(Phase.PROGRESSING, canary="2", step=0),
        make_obs(after_s=30, canary=ready("2", 1)),
        Phase.PROGRESSING,
        (ApplyTrack, ApplyTrack, Route),
        None,
        10,
    ),
    Case(
        "interval-elapsed-runs-analysis",
        make_status(Phase.PROGRESSING, canary="2", step=0),
        make_obs(after_s=61, canary=ready("2", 1)),
        Phase.PROGRESSING,
        (ApplyTrack, ApplyTrack, Route, RunAnalysis),
        None,
        10,
    ),
    Case(
        "checks-pass-advance-step",
        make_status(Phase.PROGRESSING, canary="2", step=0, checks=[passed()], checks_step=0),
        make_obs(after_s=61, canary=ready("2", 1)),
        Phase.PROGRESSING,
        (ApplyTrack, ApplyTrack, Route, BeginAnalysis),
        Reason.STEP_ADVANCED,
        50,
    ),
    Case(
        "failed-check-below-limit-retries",
        make_status(
            Phase.PROGRESSING, canary="2", step=1, checks=[failed()], checks_step=1, failed_checks=0
        ),
        make_obs(after_s=61, canary=ready("2", 2)),
        Phase.PROGRESSING,
        (ApplyTrack, ApplyTrack, Route, BeginAnalysis),
        Reason.METRIC_CHECK_FAILED,
        50,
    ),
    Case(
        "failed-checks-at-limit-roll-back",
        make_status(
            Phase.PROGRESSING, canary="2", step=1, checks=[failed()], checks_step=1, failed_checks=1
        ),
        make_obs(after_s=61, canary=ready("2", 2)),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
        Reason.METRIC_CHECK_FAILED,
        0,
    ),
    Case(
        "last-step-passes-promotes",
        make_status(Phase.PROGRESSING, canary="2", step=2, checks=[passed()], checks_step=2),
        make_obs(after_s=61, canary=ready("2", 4)),
        Phase.PROMOTING,
        (ApplyTrack, Route),
        Reason.STEP_ADVANCED,
        100,
    ),
    Case(
        "promoting-waits-for-stable-rollout",
        make_status(Phase.PROMOTING, canary="2"),
        make_obs(canary=ready("2", 4), stable=ready("1")),
        Phase.PROMOTING,
        (ApplyTrack, ApplyTrack, Route),
    ),
    Case(
        "promoting-done-removes-canary",
        make_status(Phase.PROMOTING, canary="2"),
        make_obs(canary=ready("2", 4), stable=ready("2")),
        Phase.PROMOTED,
        (ApplyTrack, Route, DeleteCanary),
        Reason.PROMOTED,
        0,
    ),
    Case(
        "rolled-back-stays-until-new-version",
        make_status(Phase.ROLLED_BACK, canary="2"),
        make_obs(),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
    ),
    Case(
        "new-version-supersedes-rollout",
        make_status(Phase.PROGRESSING, canary="2", step=1),
        make_obs(make_spec("3"), canary=ready("2", 2)),
        Phase.DEPLOYING,
        (ApplyTrack, Route, DeleteCanary, ApplyTrack, ApplyTrack, Route),
        Reason.SUPERSEDED,
        0,
    ),
    Case(
        "spec-back-to-stable-ends-rollout",
        make_status(Phase.EVALUATING, canary="2"),
        make_obs(make_spec("1")),
        Phase.PROMOTED,
        (ApplyTrack, Route, DeleteCanary),
        Reason.SUPERSEDED,
        0,
    ),
    Case(
        "abort-command-rolls-back",
        make_status(Phase.PROGRESSING, canary="2", step=0),
        make_obs(command=Command.ABORT, canary=ready("2", 1)),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
        Reason.ABORTED,
        0,
    ),
    Case(
        "promote-command-skips-steps",
        make_status(Phase.PROGRESSING, canary="2", step=0),
        make_obs(command=Command.PROMOTE, canary=ready("2", 1)),
        Phase.PROMOTING,
        (ApplyTrack, Route),
        Reason.STEP_ADVANCED,
        100,
    ),
    Case(
        "no-automatic-rollback-pauses",
        make_status(Phase.SMOKE_TESTING, canary="2", gate=gate(smoke_passed=False)),
        make_obs(make_spec(), canary=ready("2", 1)).__class__(
            spec=make_spec().model_copy(
                update={"rollback": make_spec().rollback.model_copy(update={"automatic": False})}
            ),
            generation=2,
            now=make_obs().now,
            stable=ready("1"),
            canary=ready("2", 1),
        ),
        Phase.PAUSED,
        (ApplyTrack, Route),
        Reason.SMOKE_TEST_FAILED,
        0,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide(case: Case) -> None:
    d = decide(case.status, case.obs)
    assert d.status.phase == case.phase
    assert tuple(type(e) for e in d.effects) == case.effects
    if case.reason is None:
        assert d.event is None or d.event.reason != Reason.ROLLED_BACK
    else:
        assert d.event is not None and d.event.reason == case.reason, d.event
    if case.weight is not None:
        routes = [e.weight for e in d.effects if isinstance(e, Route)]
        assert (routes[-1] if routes else d.status.canary_weight) == case.weight
    assert d.status.observed_generation == case.obs.generation


def test_rollback_records_history_with_numbers() -> None:
    status = make_status(
        Phase.EVALUATING,
        canary="2",
        gate=GateStatus(
            version="2",
            smoke_passed=True,
            compared=True,
            decision="rollback",
            stable_accuracy=0.94,
            canary_accuracy=0.11,
            reasons=["accuracy 0.11 vs 0.94"],
        ),
    )
    d = decide(status, make_obs(canary=ready("2", 1)))
    entry = d.status.history[0]
    assert (entry.version, entry.decision) == ("2", "RolledBack")
    assert (entry.stable_accuracy, entry.canary_accuracy) == (0.94, 0.11)
    assert d.event is not None and d.event.warning
    assert "0.11" in d.event.message


def test_history_is_capped_at_ten() -> None:
    status = make_status(
        Phase.EVALUATING,
        canary="2",
        gate=GateStatus(version="2", compared=True, decision="rollback"),
    )
    for _ in range(12):
        status = decide(status, make_obs(canary=ready("2", 1))).status
        status = status.model_copy(update={"phase": Phase.EVALUATING})
    assert len(status.history) == 10


def test_restart_mid_rollout_resumes_from_status() -> None:
    """The status alone carries the rollout: a fresh decide continues at the same step."""
    status = make_status(Phase.PROGRESSING, canary="2", step=1)
    d = decide(status, make_obs(after_s=10, canary=ready("2", 2)))
    assert d.status.current_step == 1 and d.status.phase == Phase.PROGRESSING
    roundtrip = type(status).model_validate(d.status.to_dict())
    assert roundtrip == d.status


def test_analysis_results_are_judged_for_their_step_only() -> None:
    status = record_check_results(make_status(Phase.PROGRESSING, canary="2", step=1), 0, [failed()])
    d = decide(status, make_obs(after_s=61, canary=ready("2", 2)))
    assert any(isinstance(e, RunAnalysis) and e.step == 1 for e in d.effects)


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [(4, 10, 1), (4, 50, 2), (4, 100, 4), (10, 25, 3), (1, 10, 1), (3, 34, 2)],
)
def test_canary_replicas_realise_weight(total: int, weight: int, expected: int) -> None:
    assert canary_replicas(total, weight) == expected


def test_every_reason_used_by_engine_or_edges() -> None:
    import inspect

    import tensorgate.engine.rollout as rollout
    import tensorgate.reconcile as reconcile

    text = inspect.getsource(rollout) + inspect.getsource(reconcile)
    unused = [r for r in Reason if f"Reason.{r.name}" not in text]
    assert unused == [], f"reasons never used: {unused}"
