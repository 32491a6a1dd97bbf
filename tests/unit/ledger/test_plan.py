"""The pure transition plan: which rows one status transition writes."""

from __future__ import annotations

from datetime import UTC, datetime

from tensorgate.ledger.base import plan_transition
from tests.unit.ledger.scenario import first_deploy, rollout

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_plan_no_change_is_empty() -> None:
    status = {"phase": "Promoted", "stableModel": {"name": "m", "version": "1", "uri": "/m"}}
    assert plan_transition(status, status, {}, NOW).is_empty


def test_plan_first_deploy_starts_and_promotes_initial_rollout() -> None:
    (o1, n1, spec), (o2, n2, _) = first_deploy("1")
    start = plan_transition(o1, n1, spec, NOW)
    assert [s.key for s in start.starts] == ["initial-1"]
    assert start.phase is not None and start.phase[1].to_phase == "Deploying"
    assert not start.ends
    done = plan_transition(o2, n2, spec, NOW)
    assert [(e.key, e.decision, e.spec) for e in done.ends] == [("initial-1", "Promoted", spec)]


def test_plan_gate_result_recorded_when_comparison_lands() -> None:
    steps = rollout("1", "2", 10, passes=True, history=[])
    old, new, spec = steps[3]  # evaluating -> compared (same phase, gate changed)
    plan = plan_transition(old, new, spec, NOW)
    assert plan.phase is None
    assert plan.gate is not None
    key, gate = plan.gate
    assert key.startswith("2-") and gate.canary_accuracy == 0.95 and gate.samples == 1000


def test_plan_rollback_ends_rollout_without_spec() -> None:
    old, new, spec = rollout("1", "2", 10, passes=False, history=[])[-1]
    plan = plan_transition(old, new, spec, NOW)
    (end,) = plan.ends
    assert end.decision == "RolledBack" and end.spec is None
    assert end.reason.startswith("AccuracyGateFailed")


def test_plan_superseded_rollout_ends_old_and_starts_new() -> None:
    old = {
        "phase": "Progressing",
        "rolloutId": "2-a",
        "canaryVersion": "2",
        "stableModel": {"name": "m", "version": "1", "uri": "/m"},
        "stableVersion": "1",
    }
    new = {
        **old,
        "phase": "Deploying",
        "rolloutId": "3-b",
        "canaryVersion": "3",
        "history": [
            {
                "version": "2",
                "decision": "Superseded",
                "reason": "by 3",
                "at": "2026-01-01T00:00:00Z",
            }
        ],
    }
    plan = plan_transition(old, new, {"model": {"version": "3"}}, NOW)
    assert [e.key for e in plan.ends] == ["2-a"]
    assert [s.key for s in plan.starts] == ["2-a", "3-b"]
    assert plan.phase is not None and plan.phase[0] == "3-b"
