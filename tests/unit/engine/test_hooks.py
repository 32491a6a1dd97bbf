"""When webhooks run and what their answers mean (engine/hooks.py via ``decide``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tensorgate.api.reasons import ConditionType, Phase, Reason
from tensorgate.api.spec import WebhookType
from tensorgate.api.status import GateStatus, HookResult, HookRun, ModelDeploymentStatus
from tensorgate.engine.effects import PostEvent, RunHooks
from tensorgate.engine.hooks import (
    hook_payload,
    post_rollout_event,
    record_hook_run,
    stamp,
)
from tensorgate.engine.rollout import Route, RunAnalysis, TrackObservation, decide
from tests.unit.engine.conftest import (
    T0,
    failed,
    make_obs,
    make_spec,
    make_status,
    passed,
    ready,
)

ROLLOUT = "2-abc-2026"


def hooks(*kinds: str) -> dict[str, Any]:
    return {
        "webhooks": [
            {"name": f"{k}-hook", "type": k, "url": f"http://127.0.0.1:9/{k}"} for k in kinds
        ]
    }


def answered(
    status: ModelDeploymentStatus,
    kind: WebhookType,
    code: int,
    *,
    after_s: float = 0,
    step: int | None = None,
) -> ModelDeploymentStatus:
    result = HookResult(
        name=f"{kind}-hook", passed=200 <= code < 300, code=code, message=f"HTTP {code}"
    )
    run = HookRun(
        type=str(kind),
        rollout_id=status.rollout_id,
        step=step,
        at=stamp(T0 + timedelta(seconds=after_s)),
        results=[result],
    )
    return record_hook_run(status, run)


def runs(effects: tuple[Any, ...], kind: WebhookType) -> bool:
    return any(isinstance(e, RunHooks) and e.type == kind for e in effects)


def evaluated(**extra: Any) -> ModelDeploymentStatus:
    gate = GateStatus(version="2", smoke_passed=True, compared=True, decision="promote")
    return make_status(Phase.EVALUATING, canary="2", gate=gate, rollout_id=ROLLOUT, **extra)


def last_step(**extra: Any) -> ModelDeploymentStatus:
    return make_status(
        Phase.PROGRESSING,
        canary="2",
        step=2,
        checks=[passed()],
        checks_step=2,
        rollout_id=ROLLOUT,
        **extra,
    )


LAST_STEP_OBS: dict[str, Any] = {"canary": ready("2", 4), "stable": TrackObservation(exists=True)}


# --- pre-rollout -------------------------------------------------------------------------


def test_pre_rollout_runs_before_the_first_traffic_step() -> None:
    spec = make_spec(**hooks("pre-rollout"))
    d = decide(evaluated(), make_obs(spec, canary=ready("2", 1)))
    assert runs(d.effects, WebhookType.PRE_ROLLOUT)
    assert d.status.phase == Phase.EVALUATING
    assert [e.weight for e in d.effects if isinstance(e, Route)] == [0]
    assert "pre-rollout webhook pre-rollout-hook" in (d.status.message or "")


def test_pre_rollout_failure_is_a_failed_check_that_rolls_back() -> None:
    spec = make_spec(**hooks("pre-rollout"))
    status = answered(evaluated(), WebhookType.PRE_ROLLOUT, 500)
    d = decide(status, make_obs(spec, canary=ready("2", 1)))
    assert d.status.phase == Phase.ROLLED_BACK
    assert d.event is not None and d.event.reason == Reason.WEBHOOK_FAILED and d.event.warning
    assert "pre-rollout-hook" in d.event.message and "HTTP 500" in d.event.message
    assert "pre-rollout-hook: HTTP 500" in (d.status.history[0].reason or "")


def test_pre_rollout_2xx_starts_the_first_step() -> None:
    spec = make_spec(**hooks("pre-rollout"))
    status = answered(evaluated(), WebhookType.PRE_ROLLOUT, 204)
    d = decide(status, make_obs(spec, canary=ready("2", 1)))
    assert d.status.phase == Phase.PROGRESSING
    assert d.status.canary_weight == 25
    assert not runs(d.effects, WebhookType.PRE_ROLLOUT)


def test_pre_rollout_answer_of_another_rollout_is_not_evidence() -> None:
    spec = make_spec(**hooks("pre-rollout"))
    status = answered(evaluated(), WebhookType.PRE_ROLLOUT, 200)
    status = status.model_copy(update={"rollout_id": "2-abc-later"})
    d = decide(status, make_obs(spec, canary=ready("2", 1)))
    assert runs(d.effects, WebhookType.PRE_ROLLOUT)


def test_pre_rollout_runs_after_smoke_when_there_is_no_golden_set() -> None:
    spec = make_spec(**hooks("pre-rollout")).model_copy(update={"golden_set": None})
    status = make_status(
        Phase.SMOKE_TESTING,
        canary="2",
        gate=GateStatus(version="2", smoke_passed=True),
        rollout_id=ROLLOUT,
    )
    d = decide(status, make_obs(spec, canary=ready("2", 1)))
    assert runs(d.effects, WebhookType.PRE_ROLLOUT)
    assert d.status.phase == Phase.SMOKE_TESTING


# --- confirm-promotion -------------------------------------------------------------------


def test_confirm_promotion_first_asks_and_says_it_waits() -> None:
    spec = make_spec(**hooks("confirm-promotion"))
    d = decide(last_step(), make_obs(spec, after_s=61, **LAST_STEP_OBS))
    assert d.status.phase == Phase.PROGRESSING
    assert runs(d.effects, WebhookType.CONFIRM_PROMOTION)
    assert d.event is not None and d.event.reason == Reason.WAITING_FOR_CONFIRMATION
    assert "confirm-promotion-hook" in (d.status.message or "")
    (cond,) = [c for c in d.conditions if c.type == ConditionType.PROGRESSING]
    assert cond.reason == Reason.WAITING_FOR_CONFIRMATION and "confirm-promotion-hook" in (
        cond.message
    )


def test_confirm_promotion_refused_waits_one_interval_without_calling() -> None:
    spec = make_spec(**hooks("confirm-promotion"))
    status = answered(last_step(), WebhookType.CONFIRM_PROMOTION, 403, after_s=61)
    d = decide(status, make_obs(spec, after_s=71, **LAST_STEP_OBS))
    assert d.status.phase == Phase.PROGRESSING
    assert not runs(d.effects, WebhookType.CONFIRM_PROMOTION)
    assert d.event is None
    assert d.requeue_s == pytest.approx(50)
    assert "HTTP 403" in (d.status.message or "")


def test_confirm_promotion_asks_again_after_an_interval() -> None:
    spec = make_spec(**hooks("confirm-promotion", "rollback"))
    status = answered(last_step(), WebhookType.CONFIRM_PROMOTION, 403, after_s=61)
    d = decide(status, make_obs(spec, after_s=122, **LAST_STEP_OBS))
    assert runs(d.effects, WebhookType.CONFIRM_PROMOTION)
    assert runs(d.effects, WebhookType.ROLLBACK)  # rollback hooks are asked while it waits
    assert d.event is None


def test_confirm_promotion_wait_keeps_judging_the_metric_checks() -> None:
    spec = make_spec(**hooks("confirm-promotion"))
    status = answered(last_step(), WebhookType.CONFIRM_PROMOTION, 403, after_s=61)
    d = decide(status, make_obs(spec, after_s=122, **LAST_STEP_OBS))
    assert [type(e).__name__ for e in d.effects][-3:] == [
        "RunAnalysis",
        "RunHooks",
        "BeginAnalysis",
    ]
    regressed = d.status.model_copy(update={"checks": [failed()], "failed_checks": 1})
    regressed = answered(regressed, WebhookType.CONFIRM_PROMOTION, 200, after_s=122)
    rolled = decide(regressed, make_obs(spec, after_s=123, **LAST_STEP_OBS))
    assert rolled.status.phase == Phase.ROLLED_BACK  # a yes does not promote a regression
    assert rolled.event is not None and rolled.event.reason == Reason.METRIC_CHECK_FAILED


def test_confirm_promotion_wait_outlives_the_progress_deadline() -> None:
    spec = make_spec(**hooks("confirm-promotion"))
    status = answered(last_step(), WebhookType.CONFIRM_PROMOTION, 403, after_s=3 * 3600)
    d = decide(status, make_obs(spec, after_s=3 * 3600 + 5, **LAST_STEP_OBS))
    assert d.status.phase == Phase.PROGRESSING  # progressDeadline 10m passed long ago


def test_confirm_promotion_2xx_after_a_wait_past_the_deadline_promotes() -> None:
    spec = make_spec(**hooks("confirm-promotion"))
    status = answered(last_step(), WebhookType.CONFIRM_PROMOTION, 200, after_s=3 * 3600)
    d = decide(status, make_obs(spec, after_s=3 * 3600 + 1, **LAST_STEP_OBS))
    assert d.status.phase == Phase.PROMOTING  # found by the e2e scenario: not a deadline


def test_confirm_promotion_abort_still_rolls_back() -> None:
    spec = make_spec(**hooks("confirm-promotion"))
    status = answered(last_step(), WebhookType.CONFIRM_PROMOTION, 403, after_s=61)
    d = decide(status, make_obs(spec, after_s=71, command="abort", **LAST_STEP_OBS))
    assert d.status.phase == Phase.ROLLED_BACK
    assert d.event is not None and d.event.reason == Reason.ABORTED


def test_confirm_promotion_2xx_promotes() -> None:
    spec = make_spec(**hooks("confirm-promotion"))
    status = answered(last_step(), WebhookType.CONFIRM_PROMOTION, 200, after_s=61)
    d = decide(status, make_obs(spec, after_s=125, **LAST_STEP_OBS))
    assert d.status.phase == Phase.PROMOTING
    assert "confirm-promotion webhooks confirm-promotion-hook passed" in (d.status.message or "")


# --- rollback ----------------------------------------------------------------------------


def test_rollback_hooks_are_asked_with_each_step_analysis() -> None:
    spec = make_spec(**hooks("rollback"))
    status = make_status(Phase.PROGRESSING, canary="2", step=0, rollout_id=ROLLOUT)
    d = decide(status, make_obs(spec, after_s=61, canary=ready("2", 1), stable=ready("1", 3)))
    assert any(isinstance(e, RunAnalysis) for e in d.effects)
    assert RunHooks(WebhookType.ROLLBACK, 0) in d.effects


def test_rollback_hook_2xx_rolls_back_naming_the_hook() -> None:
    spec = make_spec(**hooks("rollback"))
    status = make_status(
        Phase.PROGRESSING, canary="2", step=0, checks=[passed()], checks_step=0, rollout_id=ROLLOUT
    )
    status = answered(status, WebhookType.ROLLBACK, 200, step=0)
    d = decide(status, make_obs(spec, after_s=61, canary=ready("2", 1), stable=ready("1", 3)))
    assert d.status.phase == Phase.ROLLED_BACK
    assert d.event is not None and d.event.reason == Reason.WEBHOOK_ROLLBACK
    assert "rollback webhook rollback-hook" in d.event.message


def test_rollback_hook_non_2xx_lets_the_step_advance() -> None:
    spec = make_spec(**hooks("rollback"))
    status = make_status(
        Phase.PROGRESSING, canary="2", step=0, checks=[passed()], checks_step=0, rollout_id=ROLLOUT
    )
    status = answered(status, WebhookType.ROLLBACK, 404, step=0)
    d = decide(status, make_obs(spec, after_s=61, canary=ready("2", 1), stable=ready("1", 3)))
    assert d.status.phase == Phase.PROGRESSING and d.status.current_step == 1


# --- post-rollout ------------------------------------------------------------------------


def test_post_rollout_runs_once_when_promoted() -> None:
    spec = make_spec(**hooks("post-rollout"))
    status = make_status(Phase.PROMOTING, canary="2", rollout_id=ROLLOUT)
    d = decide(status, make_obs(spec, canary=ready("2", 4), stable=ready("2")))
    assert d.status.phase == Phase.PROMOTED
    assert runs(d.effects, WebhookType.POST_ROLLOUT)
    again = decide(d.status, make_obs(spec, after_s=5, stable=ready("2")))
    assert not runs(again.effects, WebhookType.POST_ROLLOUT)


def test_post_rollout_runs_when_rolled_back() -> None:
    spec = make_spec(**hooks("post-rollout"))
    status = make_status(
        Phase.PROGRESSING,
        canary="2",
        step=1,
        checks=[failed()],
        checks_step=1,
        failed_checks=1,
        rollout_id=ROLLOUT,
    )
    d = decide(status, make_obs(spec, after_s=61, canary=ready("2", 2), stable=ready("1", 2)))
    assert d.status.phase == Phase.ROLLED_BACK
    assert runs(d.effects, WebhookType.POST_ROLLOUT)


def test_post_rollout_failure_is_a_warning_only() -> None:
    bad = HookResult(name="notify", passed=False, code=502, message="HTTP 502 after 3 attempts")
    event = post_rollout_event([bad])
    assert event is not None and event.warning and event.reason == Reason.WEBHOOK_FAILED
    assert "notify: HTTP 502" in event.message
    assert post_rollout_event([bad.model_copy(update={"passed": True, "code": 200})]) is None


# --- event -------------------------------------------------------------------------------


def test_event_hooks_get_every_phase_change() -> None:
    spec = make_spec(**hooks("event"))
    d = decide(evaluated(), make_obs(spec, canary=ready("2", 1)))
    assert d.status.phase == Phase.PROGRESSING
    (post,) = [e for e in d.effects if isinstance(e, PostEvent)]
    assert post.reason == Reason.ACCURACY_GATE_PASSED


def test_event_hooks_get_a_failed_check_without_a_phase_change() -> None:
    spec = make_spec(**hooks("event"))
    status = make_status(
        Phase.PROGRESSING,
        canary="2",
        step=1,
        checks=[failed()],
        checks_step=1,
        failed_checks=0,
        rollout_id=ROLLOUT,
    )
    d = decide(status, make_obs(spec, after_s=61, canary=ready("2", 2), stable=ready("1", 2)))
    assert d.status.phase == Phase.PROGRESSING
    (post,) = [e for e in d.effects if isinstance(e, PostEvent)]
    assert post.reason == Reason.METRIC_CHECK_FAILED


def test_event_hooks_are_quiet_when_nothing_happens() -> None:
    spec = make_spec(**hooks("event"))
    status = make_status(Phase.PROGRESSING, canary="2", step=0, rollout_id=ROLLOUT)
    d = decide(status, make_obs(spec, after_s=30, canary=ready("2", 1)))
    assert not any(isinstance(e, PostEvent) for e in d.effects)


def test_no_webhooks_no_hook_effects() -> None:
    d = decide(last_step(), make_obs(make_spec(), after_s=61, **LAST_STEP_OBS))
    assert d.status.phase == Phase.PROMOTING
    assert not any(isinstance(e, RunHooks | PostEvent) for e in d.effects)


def test_payload_has_the_gate_numbers_and_no_url() -> None:
    spec = make_spec(**hooks("event"))
    gate = GateStatus(
        version="2",
        stable_accuracy=0.94,
        canary_accuracy=0.93,
        upper_bound=0.015,
        samples=2000,
        decision="promote",
    )
    status = make_status(Phase.PROGRESSING, canary="2", step=1, gate=gate, rollout_id=ROLLOUT)
    hook = spec.analysis.webhooks[0]
    payload = hook_payload(
        name="mnist", namespace="ml", spec=spec, status=status, hook=hook, reason="StepAdvanced"
    )
    assert payload["gate"] == {
        "stableAccuracy": 0.94,
        "candidateAccuracy": 0.93,
        "delta": None,
        "upperBound": 0.015,
        "margin": 0.02,
        "confidence": 0.95,
        "n": 2000,
        "decision": "promote",
    }
    assert (payload["model"], payload["version"], payload["weight"]) == ("mnist", "2", 50)
    assert payload["hook"] == {"name": "event-hook", "type": "event"}
    assert "127.0.0.1" not in repr(payload)
