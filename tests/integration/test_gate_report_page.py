"""The operator's gate report page (built from ``status.gate``) in real headless Chromium: the
numbers the status holds are in the browser's DOM and the screenshot is not blank."""

from __future__ import annotations

from pathlib import Path

from tensorgate.api.status import (
    CheckResult,
    ClassRecall,
    GateStatus,
    SliceVerdict,
    VerdictRecord,
)
from tensorgate.gate.status_report import render_gate_status
from tests.integration.test_html_report import dom_text, parse, screenshot_colours


def collapsed_gate() -> GateStatus:
    """What the operator's status holds after the story's model was compared."""
    return GateStatus(
        version="2",
        revision="5f1c2a9b0d",
        decision="rollback",
        smoke_passed=True,
        compared=True,
        smoke=[CheckResult(name="batch-parity", passed=True, message="batch of 8 == 8 single")],
        contract_diff=["input pixels: dtype float32 -> float16"],
        stable_accuracy=0.9415,
        canary_accuracy=0.1105,
        delta=0.831,
        upper_bound=0.8452,
        p_value=1.0,
        samples=2000,
        method="tango-score-cc",
        verdict=VerdictRecord(
            n=2000,
            b=1700,
            c=38,
            confidence=0.95,
            margin=0.02,
            method="tango-score-cc",
            slices=[SliceVerdict(slice="mobile", n=800, b=700, c=10)],
        ),
        reasons=["accuracy drop upper bound 0.8452 > maxAccuracyDrop 0.02 (2000 samples)"],
        class_recall_changes=[
            ClassRecall(label=3, support=201, stable_recall=0.9552, candidate_recall=0.0)
        ],
    )


def test_operator_gate_page_in_chromium_shows_the_status_numbers(tmp_path: Path) -> None:
    html = render_gate_status(
        collapsed_gate(), confidence=0.95, margin=0.02, title="ml/mnist: gate of 2"
    )
    assert not {t for t, _ in parse(html).tags} & {"script", "img", "link", "iframe"}
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    text = dom_text(page, tmp_path)
    for number in ("0.9415", "0.1105", "0.8452", "0.0200", "2000", "1700", "38"):
        assert number in text, number
    for fragment in ("rollback", "batch-parity", "class 3", "mobile", "float16", "ml/mnist"):
        assert fragment in text, fragment
    assert screenshot_colours(page, tmp_path) > 16
