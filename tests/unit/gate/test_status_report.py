"""The operator's gate report page, built from ``status.gate``: the numbers are in it, and it
stays under its bound with long tables cut and said so."""

from __future__ import annotations

from tensorgate.api.status import (
    CheckResult,
    ClassRecall,
    GateStatus,
    SliceVerdict,
    VerdictRecord,
)
from tensorgate.gate.status_report import MAX_HTML_BYTES, gate_status_report, render_gate_status


def compared(**extra: object) -> GateStatus:
    fields: dict[str, object] = {
        "version": "2",
        "revision": "abc",
        "decision": "rollback",
        "smoke_passed": True,
        "compared": True,
        "smoke": [CheckResult(name="signature", passed=True, message="matches")],
        "stable_accuracy": 0.9412,
        "canary_accuracy": 0.1133,
        "delta": 0.8279,
        "upper_bound": 0.8441,
        "p_value": 0.9999,
        "samples": 1000,
        "method": "tango-score-cc",
        "verdict": VerdictRecord(
            n=1000, b=840, c=12, confidence=0.95, margin=0.02, method="tango-score-cc"
        ),
        "reasons": ["accuracy drop upper bound 0.8441 > maxAccuracyDrop 0.02"],
        "class_recall_changes": [
            ClassRecall(label=3, support=100, stable_recall=0.95, candidate_recall=0.1)
        ],
    }
    fields.update(extra)
    return GateStatus.model_validate(fields)


def test_gate_status_report_has_the_numbers_and_what_caught_it() -> None:
    report = gate_status_report(compared(), confidence=0.95, margin=0.02)
    canary = report["canary"]
    assert canary["ran"] and canary["maxAccuracyDrop"] == 0.02
    assert canary["discordant"] == {"stableOnlyCorrect": 840, "candidateOnlyCorrect": 12}
    assert report["caughtBy"] == ["accuracy"] and report["decision"] == "rollback"
    page = render_gate_status(compared(), confidence=0.95, margin=0.02, title="ml/mnist")
    for text in ("0.9412", "0.1133", "0.8441", "0.0200", "class 3", "signature"):
        assert text in page


def test_gate_status_report_of_a_failed_smoke_test_says_the_comparison_did_not_run() -> None:
    gate = GateStatus(
        smoke_passed=False,
        smoke=[CheckResult(name="batch-parity", passed=False, message="rows differ")],
        reasons=["batch-parity: rows differ"],
    )
    page = render_gate_status(gate, confidence=0.95, margin=0.02, title="t")
    assert "did not run" in page and "batch-parity" in page and "rollback" in page


def test_render_gate_status_is_bounded_and_says_what_it_cut() -> None:
    slices = [SliceVerdict(slice=f"s{i:05d}-" + "x" * 60, n=100, b=3, c=2) for i in range(8000)]
    verdict = VerdictRecord(
        n=800_000, b=24_000, c=16_000, confidence=0.95, margin=0.02, method="m", slices=slices
    )
    gate = compared(verdict=verdict, canary_checks=[CheckResult(name="c", passed=True)] * 3000)
    page = render_gate_status(gate, confidence=0.95, margin=0.02, title="big")
    assert len(page.encode()) <= MAX_HTML_BYTES
    assert "more row(s) not shown" in page and "0.9412" in page
