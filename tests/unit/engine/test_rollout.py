"""The rollout state machine, as tables of (state, observations) -> decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from tensorgate.api.reasons import ConditionType, Phase, Reason
from tensorgate.api.status import CheckResult, GateStatus
from tensorgate.engine.conditions import merge_conditions
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
    decide,
    record_check_results,
)
from tests.unit.engine.conftest import (
    T0,
    failed,
    make_obs,
    make_spec,
    make_status,
    passed,
    ready,
    track,
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
        "step-is-judged-only-once-the-pods-have-moved",
        make_status(Phase.PROGRESSING, canary="2", step=0),
        make_obs(after_s=61, canary=track("2", 1, 0), stable=ready("1", 4)),
        Phase.PROGRESSING,
        (ApplyTrack, ApplyTrack, Route),
    ),
    Case(
        "first-deploy-writes-its-phase-before-creating-anything",
        make_status(None, stable=None),
        make_obs(make_spec("1"), stable=TrackObservation()),
        Phase.DEPLOYING,
        (),
        Reason.DEPLOYING,
    ),
    Case(
        "first-deploy-then-creates-stable",
        make_status(Phase.DEPLOYING, stable=None),
        make_obs(make_spec("1"), stable=TrackObservation()),
        Phase.DEPLOYING,
        (ApplyTrack, Route),
    ),
    Case(
        "first-deploy-waits-for-pods",
        make_status(Phase.DEPLOYING, stable=None),
        make_obs(make_spec("1"), stable=track("1", 4, 2)),
        Phase.DEPLOYING,
        (ApplyTrack, Route),
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
        "steady-state-keeps-stable-and-asks-nothing",
        make_status(),
        make_obs(make_spec("1")),
        Phase.PROMOTED,
        (ApplyTrack, Route),
    ),
    Case(
        "steady-state-removes-a-leftover-canary",
        make_status(),
        make_obs(make_spec("1"), canary=ready("2", 1)),
        Phase.PROMOTED,
        (ApplyTrack, Route, DeleteCanary),
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
        make_obs(after_s=30, canary=track("2", 1, 0)),
        Phase.DEPLOYING,
        (ApplyTrack, ApplyTrack, Route),
    ),
    Case(
        "canary-readiness-timeout-rolls-back",
        make_status(Phase.DEPLOYING, canary="2"),
        make_obs(after_s=601, canary=track("2", 1, 0)),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
        Reason.READINESS_TIMEOUT,
        0,
    ),
    Case(
        "canary-ready-enters-smoke-testing",
        make_status(Phase.DEPLOYING, canary="2"),
        make_obs(canary=ready("2", 1)),
        Phase.SMOKE_TESTING,
        (ApplyTrack, ApplyTrack, Route),
        Reason.SMOKE_TESTING,
    ),
    Case(
        "smoke-testing-runs-smoke",
        make_status(Phase.SMOKE_TESTING, canary="2"),
        make_obs(canary=ready("2", 1)),
        Phase.SMOKE_TESTING,
        (ApplyTrack, ApplyTrack, RunSmoke),
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
        "smoke-pass-enters-evaluating",
        make_status(Phase.SMOKE_TESTING, canary="2", gate=gate(smoke_passed=True)),
        make_obs(canary=ready("2", 1)),
        Phase.EVALUATING,
        (ApplyTrack, ApplyTrack),
        Reason.SMOKE_TEST_PASSED,
    ),
    Case(
        "evaluating-runs-golden-set",
        make_status(Phase.EVALUATING, canary="2", gate=gate(smoke_passed=True)),
        make_obs(canary=ready("2", 1)),
        Phase.EVALUATING,
        (ApplyTrack, ApplyTrack, RunComparison),
    ),
    Case(
        "stuck-smoke-ends-at-progress-deadline",
        make_status(Phase.SMOKE_TESTING, canary="2"),
        make_obs(after_s=601, canary=ready("2", 1)),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
        Reason.PROGRESS_DEADLINE_EXCEEDED,
        0,
    ),
    Case(
        "edge-errors-at-limit-roll-back",
        make_status(Phase.EVALUATING, canary="2", gate=gate(smoke_passed=True), edge_errors=5),
        make_obs(after_s=10, canary=ready("2", 1)),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
        Reason.EDGE_ERROR_LIMIT,
        0,
    ),
    Case(
        "edge-errors-below-limit-retry",
        make_status(Phase.EVALUATING, canary="2", gate=gate(smoke_passed=True), edge_errors=4),
        make_obs(after_s=10, canary=ready("2", 1)),
        Phase.EVALUATING,
        (ApplyTrack, ApplyTrack, RunComparison),
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
        # 4 replicas: 10% is one canary pod of four, so users get 25% and status says so.
        "accuracy-pass-starts-first-step-at-true-weight",
        make_status(
            Phase.EVALUATING,
            canary="2",
            gate=gate(smoke_passed=True, compared=True, decision="promote"),
        ),
        make_obs(canary=ready("2", 1)),
        Phase.PROGRESSING,
        (ApplyTrack, ApplyTrack, Route, BeginAnalysis),
        Reason.ACCURACY_GATE_PASSED,
        25,
    ),
    Case(
        "step-waits-for-interval",
        make_status(Phase.PROGRESSING, canary="2", step=0, canary_weight=25),
        make_obs(after_s=30, canary=ready("2", 1)),
        Phase.PROGRESSING,
        (ApplyTrack, ApplyTrack, Route),
        None,
        25,
    ),
    Case(
        "interval-elapsed-runs-analysis",
        make_status(Phase.PROGRESSING, canary="2", step=0),
        make_obs(after_s=61, canary=ready("2", 1), stable=ready("1", 3)),
        Phase.PROGRESSING,
        (ApplyTrack, ApplyTrack, Route, RunAnalysis),
        None,
        25,
    ),
    Case(
        "checks-pass-advance-step",
        make_status(Phase.PROGRESSING, canary="2", step=0, checks=[passed()], checks_step=0),
        make_obs(after_s=61, canary=ready("2", 1), stable=ready("1", 3)),
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
        make_obs(after_s=61, canary=ready("2", 2), stable=ready("1", 2)),
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
        make_obs(after_s=61, canary=ready("2", 2), stable=ready("1", 2)),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route, DeleteCanary),
        Reason.METRIC_CHECK_FAILED,
        0,
    ),
    Case(
        "last-step-passes-promotes",
        make_status(Phase.PROGRESSING, canary="2", step=2, checks=[passed()], checks_step=2),
        make_obs(after_s=61, canary=ready("2", 4), stable=TrackObservation(exists=True)),
        Phase.PROMOTING,
        (),
        Reason.STEP_ADVANCED,
        100,
    ),
    Case(
        "promoting-first-moves-every-pod-to-the-canary",
        make_status(Phase.PROMOTING, canary="2"),
        make_obs(canary=ready("2", 2), stable=ready("1", 2)),
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
        "rolled-back-stays-until-new-revision",
        make_status(Phase.ROLLED_BACK, canary="2"),
        make_obs(),
        Phase.ROLLED_BACK,
        (ApplyTrack, Route),
    ),
    Case(
        "new-version-supersedes-rollout",
        make_status(Phase.PROGRESSING, canary="2", step=1),
        make_obs(make_spec("3"), canary=ready("2", 2)),
        Phase.DEPLOYING,
        (ApplyTrack, Route, DeleteCanary, ApplyTrack, Route),
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
        "abort-command-from-paused-rolls-back",
        make_status(Phase.PAUSED, canary="2"),
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
        (),
        Reason.STEP_ADVANCED,
    ),
    Case(
        "promote-command-from-paused-promotes",
        make_status(Phase.PAUSED, canary="2"),
        make_obs(command=Command.PROMOTE, canary=ready("2", 1)),
        Phase.PROMOTING,
        (),
        Reason.STEP_ADVANCED,
    ),
    Case(
        "promote-command-before-the-gate-is-ignored",
        make_status(Phase.SMOKE_TESTING, canary="2"),
        make_obs(command=Command.PROMOTE, canary=ready("2", 1)),
        Phase.SMOKE_TESTING,
        (),
        Reason.COMMAND_IGNORED,
    ),
    Case(
        "unknown-command-is-ignored",
        make_status(Phase.PROGRESSING, canary="2", step=0),
        make_obs(command="promot", canary=ready("2", 1)),
        Phase.PROGRESSING,
        (),
        Reason.COMMAND_IGNORED,
    ),
    Case(
        "retry-command-after-rollback-starts-again",
        make_status(Phase.ROLLED_BACK, canary="2"),
        make_obs(command=Command.RETRY),
        Phase.DEPLOYING,
        (ApplyTrack, ApplyTrack, Route),
        Reason.RETRYING,
        0,
    ),
    Case(
        "no-automatic-rollback-pauses",
        make_status(Phase.SMOKE_TESTING, canary="2", gate=gate(smoke_passed=False)),
        make_obs(
            make_spec().model_copy(
                update={"rollback": make_spec().rollback.model_copy(update={"automatic": False})}
            ),
            canary=ready("2", 1),
        ),
        Phase.PAUSED,
        (ApplyTrack, ApplyTrack, Route),
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
    d = decide(status, make_obs(after_s=61, canary=ready("2", 2), stable=ready("1", 2)))
    assert any(isinstance(e, RunAnalysis) and e.step == 1 for e in d.effects)


def test_every_reason_used_by_engine_or_edges() -> None:
    import inspect

    import tensorgate.engine.rollout as rollout
    import tensorgate.reconcile as reconcile

    text = inspect.getsource(rollout) + inspect.getsource(reconcile)
    unused = [r for r in Reason if f"Reason.{r.name}" not in text]
    assert unused == [], f"reasons never used: {unused}"


def test_gate_warnings_reach_a_warning_event() -> None:
    """A passed gate with warnings (say, the stable model scores near chance) is promoted to
    the first step, and the Event that says so is a Warning naming them."""
    warned = GateStatus(
        version="2",
        smoke_passed=True,
        compared=True,
        decision="promote",
        warnings=["stable accuracy 0.11 is near chance (0.10)"],
    )
    d = decide(
        make_status(Phase.EVALUATING, canary="2", gate=warned), make_obs(canary=ready("2", 1))
    )
    assert d.status.phase == Phase.PROGRESSING
    assert d.event is not None and d.event.warning and "near chance" in d.event.message


def _gate_warning(conditions: Any) -> Any:
    (cond,) = [c for c in conditions if c.type == ConditionType.GATE_WARNING]
    return cond


NEAR_CHANCE = "stable model scores near chance on the golden set: accuracy 0.1100"


def test_gate_warning_condition_set_by_a_weak_pass_and_cleared_by_a_clean_gate() -> None:
    """A passed gate with warnings sets GateWarning=True (reason WeakVerdict, the warnings as
    message) without touching Ready or Degraded; the next rollout's gate without warnings
    sets it False, and only that flip moves lastTransitionTime."""
    weak = gate(smoke_passed=True, compared=True, decision="promote", warnings=[NEAR_CHANCE])
    d = decide(make_status(Phase.EVALUATING, canary="2", gate=weak), make_obs(canary=ready("2", 1)))
    assert d.status.phase == Phase.PROGRESSING
    cond = _gate_warning(d.conditions)
    assert (cond.is_true, cond.reason, cond.message) == (True, Reason.WEAK_VERDICT, NEAR_CHANCE)
    assert not any(c.type in {ConditionType.READY, ConditionType.DEGRADED} for c in d.conditions)
    written = merge_conditions([], d.conditions, T0)

    clean = GateStatus(version="3", smoke_passed=True, compared=True, decision="promote")
    later = make_status(Phase.EVALUATING, stable="2", canary="3", gate=clean, conditions=written)
    d = decide(later, make_obs(make_spec("3"), stable=ready("2"), canary=ready("3", 1)))
    assert d.status.phase == Phase.PROGRESSING
    assert d.event is not None and not d.event.warning
    cond = _gate_warning(d.conditions)
    assert (cond.is_true, cond.reason) == (False, Reason.NO_WARNINGS)
    assert "no warnings" in cond.message
    stamp = T0 + timedelta(minutes=5)
    after = _gate_warning(merge_conditions(written, d.conditions, stamp))
    assert (after.status, after.reason) == ("False", "NoWarnings")
    assert after.last_transition_time == stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_gate_warning_condition_set_by_a_weak_failed_gate() -> None:
    """A gate that fails with warnings rolls back (Degraded) and says the verdict was weak."""
    weak = gate(
        smoke_passed=True,
        compared=True,
        decision="rollback",
        reasons=["drop upper bound 0.0412 > maxAccuracyDrop 0.02"],
        warnings=[NEAR_CHANCE],
    )
    d = decide(make_status(Phase.EVALUATING, canary="2", gate=weak), make_obs(canary=ready("2", 1)))
    assert d.status.phase == Phase.ROLLED_BACK
    cond = _gate_warning(d.conditions)
    assert (cond.is_true, cond.reason) == (True, Reason.WEAK_VERDICT)


@pytest.mark.parametrize(
    ("smoke_passed", "phase"),
    [(True, Phase.PROGRESSING), (False, Phase.ROLLED_BACK)],
    ids=["smoke-only-pass-clears-gate-warning", "smoke-failure-clears-gate-warning"],
)
def test_gate_warning_condition_cleared_by_a_gate_without_golden_set(
    smoke_passed: bool, phase: Phase
) -> None:
    spec = make_spec()
    spec = spec.model_copy(update={"golden_set": None})
    smoke = [CheckResult(name="shape", passed=smoke_passed, message="output shape")]
    judged = gate(smoke_passed=smoke_passed, smoke=smoke)
    d = decide(
        make_status(Phase.SMOKE_TESTING, canary="2", gate=judged),
        make_obs(spec, canary=ready("2", 1)),
    )
    assert d.status.phase == phase
    cond = _gate_warning(d.conditions)
    assert (cond.is_true, cond.reason) == (False, Reason.NO_WARNINGS)
