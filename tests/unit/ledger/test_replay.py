"""Replayable verdicts: stored inputs -> the verdict again (``tensorgate history --verify``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tensorgate.engine.stats import noninferiority
from tensorgate.ledger.base import GateResult, RolloutRecord, plan_transition
from tensorgate.ledger.replay import MATCH, MISMATCH, UNVERIFIABLE, verify_record

MARGIN, CONFIDENCE = 0.02, 0.95


def _record(gate: dict[str, Any] | None, decision: str, *, inputs: bool = True) -> RolloutRecord:
    stored = {"gate": gate, "spec": {"maxAccuracyDrop": MARGIN, "confidence": CONFIDENCE}}
    return RolloutRecord(
        id=7,
        namespace="ml",
        model="mnist",
        rollout_key="2-abc",
        candidate_version="2",
        stable_version="1",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        gate=GateResult(decision=decision, inputs=stored if inputs else None),
    )


def _compared(b: int, c: int, n: int, **extra: Any) -> dict[str, Any]:
    """A gate row as recorded before the gate kept its verdict record (uncorrected method)."""
    result = noninferiority(b, c, n, MARGIN, CONFIDENCE, method="tango-score")
    return {
        "compared": True,
        "smokePassed": True,
        "samples": n,
        "stableOnlyCorrect": b,
        "candidateOnlyCorrect": c,
        "upperBound": result.upper_bound,
        "method": "tango-score",
        "decision": "promote" if result.is_non_inferior else "rollback",
        **extra,
    }


@pytest.mark.parametrize(("b", "c", "n"), [(3, 2, 1000), (40, 5, 1000), (0, 0, 200)])
def test_discordant_counts_replay_to_the_stored_verdict(b: int, c: int, n: int) -> None:
    gate = _compared(b, c, n)
    checked = verify_record(_record(gate, gate["decision"]))
    assert checked is not None and checked.outcome == MATCH, checked
    assert f"b={b} c={c}" in checked.detail


def test_a_verdict_its_counts_do_not_support_is_a_mismatch() -> None:
    gate = _compared(40, 5, 1000)  # a clear drop: rollback
    checked = verify_record(_record(gate, "promote"))
    assert checked is not None and checked.outcome == MISMATCH
    assert (checked.stored, checked.replayed) == ("promote", "rollback")
    assert checked.row == "rollout 7 (2-abc, version 2)"


@pytest.mark.parametrize(
    ("b", "c", "n", "decision"), [(0, 0, 300, "promote"), (40, 5, 1000, "rollback")]
)
def test_a_recorded_verdict_is_replayed_by_the_engine(
    b: int, c: int, n: int, decision: str
) -> None:
    """Rows with status.gate.verdict (the corrected method) replay through replay_verdict;
    a tampered decision is a mismatch."""
    verdict = {"n": n, "b": b, "c": c, "confidence": CONFIDENCE, "margin": MARGIN}
    gate = {"compared": True, "smokePassed": True, "samples": n, "method": "tango-score-cc"}
    gate["verdict"] = {**verdict, "method": "tango-score-cc"}
    checked = verify_record(_record(gate, decision))
    assert checked is not None and checked.outcome == MATCH, checked
    other = "rollback" if decision == "promote" else "promote"
    tampered = verify_record(_record(gate, other))
    assert tampered is not None and tampered.outcome == MISMATCH


def test_a_stored_bound_the_method_does_not_give_is_a_mismatch() -> None:
    gate = _compared(3, 2, 1000)
    gate["upperBound"] += 1e-6
    checked = verify_record(_record(gate, "promote"))
    assert checked is not None and checked.outcome == MISMATCH
    assert "stored upper bound" in checked.detail


def test_an_unknown_method_cannot_be_replayed() -> None:
    checked = verify_record(_record(_compared(3, 2, 1000, method="magic"), "promote"))
    assert checked is not None and checked.outcome == MISMATCH and "magic" in checked.detail


def test_a_rollback_for_a_failed_check_replays_as_rollback() -> None:
    """The statistic alone would promote; a failed non-statistical check explains the rollback."""
    reasons = ["canary check candidate-finite failed: 3 NaN rows", "accuracy drop ..."]
    gate = _compared(3, 2, 1000, reasons=reasons, decision="rollback")
    checked = verify_record(_record(gate, "rollback"))
    assert checked is not None and checked.outcome == MATCH
    smoke = {"smokePassed": False, "smoke": [{"name": "signature", "passed": False}]}
    checked = verify_record(_record(smoke, "rollback"))
    assert checked is not None and checked.outcome == MATCH


def test_old_rows_without_inputs_are_unverifiable_and_no_gate_is_nothing() -> None:
    checked = verify_record(_record({}, "promote", inputs=False))
    assert checked is not None and checked.outcome == UNVERIFIABLE
    no_golden = {"compared": True, "smokePassed": True, "decision": "promote"}
    assert verify_record(_record(no_golden, "promote")) is None


def test_the_stored_inputs_keep_gate_fields_this_version_does_not_know() -> None:
    """status.gate is stored whole: fields the gate adds later reach the ledger."""
    gate = {**_compared(3, 2, 1000), "slices": [{"id": "de", "n": 10, "b": 1, "c": 0}]}
    old = {"phase": "Evaluating", "rolloutId": "2-abc", "stableVersion": "1"}
    new = {**old, "gate": gate, "stableModel": {"name": "m", "version": "1", "uri": "s3://1"}}
    plan = plan_transition(
        {**old, "stableModel": new["stableModel"]},
        new,
        {"model": {"version": "2"}, "analysis": {"maxAccuracyDrop": 0.05}},
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert plan.gate is not None
    inputs = plan.gate[1].inputs
    assert inputs is not None
    assert inputs["gate"]["stableOnlyCorrect"] == 3
    assert inputs["gate"]["slices"][0]["id"] == "de"
    assert inputs["spec"] == {"maxAccuracyDrop": 0.05, "confidence": 0.95}


@pytest.mark.parametrize("decide", [True, False])
def test_slice_tests_are_replayed_when_they_decided(decide: bool) -> None:
    """``history --verify`` said "per-slice tests not replayed yet" for every row with slices,
    although the engine replays them from the verdict record when ``decideOnSlices`` is set:
    a slice with a clear drop then replays to rollback; otherwise it only warned."""
    slices = [{"slice": "de", "n": 200, "b": 30, "c": 0}, {"slice": "fr", "n": 800, "b": 0, "c": 0}]
    verdict = {
        "n": 1000, "b": 30, "c": 0, "confidence": CONFIDENCE, "margin": 0.05,
        "method": "tango-score-cc", "slices": slices, "decideOnSlices": decide,
        "sliceMargin": MARGIN,
    }  # fmt: skip
    stored = "rollback" if decide else "promote"  # overall 3 % drop is within the 5 % margin
    checked = verify_record(_record({**_compared(30, 0, 1000), "verdict": verdict}, stored))
    assert checked is not None and checked.outcome == MATCH, checked
    assert checked.replayed == stored
    assert "not replayed" not in checked.detail
    assert ("only warned" in checked.detail) is not decide


def test_slices_of_a_row_without_a_verdict_record_are_named_as_not_replayed() -> None:
    gate = {**_compared(3, 2, 1000), "slices": [{"slice": "de", "n": 10, "b": 1, "c": 0}]}
    checked = verify_record(_record(gate, gate["decision"]))
    assert checked is not None and "per-slice tests not replayed" in checked.detail
