"""The operator's gate report: the HTML page of ``html_report`` built from ``status.gate``.

The operator keeps a gate's result in the resource's status (``GateStatus``), not the
``GateReport`` the CLI holds, so the page is built from what status records: the decision,
stable vs candidate accuracy with the bound against the margin, the smoke checks, the contract
diff, the classes whose recall fell, the per-slice discordant counts and the paired confusion
changes. A page made after an operator restart is the same page. The size bound is
``render_html``'s (:data:`MAX_HTML_BYTES`, half a ConfigMap): long tables keep their first
rows and say how many were left out.
"""

from __future__ import annotations

from typing import Any

from tensorgate.api.status import GateStatus
from tensorgate.gate.html_report import MAX_HTML_BYTES, render_html

__all__ = ["MAX_HTML_BYTES", "gate_status_report", "render_gate_status"]


def _canary(gate: GateStatus, confidence: float, margin: float) -> dict[str, Any]:
    if not gate.compared or gate.stable_accuracy is None or gate.canary_accuracy is None:
        return {"ran": False}
    verdict = gate.verdict
    margin = verdict.margin if verdict is not None else margin
    non_inferior = gate.upper_bound is not None and gate.upper_bound <= margin
    return {
        "ran": True,
        "passed": gate.decision == "promote",
        "samples": gate.samples,
        "stableAccuracy": gate.stable_accuracy,
        "candidateAccuracy": gate.canary_accuracy,
        "drop": gate.delta,
        "upperBound": gate.upper_bound,
        "pValue": gate.p_value,
        "confidence": verdict.confidence if verdict is not None else confidence,
        "maxAccuracyDrop": margin,
        "method": gate.method or "",
        "discordant": {}
        if verdict is None
        else {"stableOnlyCorrect": verdict.b, "candidateOnlyCorrect": verdict.c},
        "nonInferior": non_inferior,
        "agreement": gate.agreement,
        "classRecallChanges": [
            {**c.to_dict(), "drop": round(c.stable_recall - c.candidate_recall, 6)}
            for c in gate.class_recall_changes
        ],
        "checks": [c.to_dict() for c in gate.canary_checks],
        "warnings": list(gate.warnings),
        "slices": [
            {
                "slice": s.slice,
                "samples": s.n,
                "stableOnlyCorrect": s.b,
                "candidateOnlyCorrect": s.c,
                "drop": round((s.b - s.c) / s.n, 6) if s.n else None,
            }
            for s in (verdict.slices if verdict is not None else [])
        ],
    }


def gate_status_report(gate: GateStatus, *, confidence: float, margin: float) -> dict[str, Any]:
    """``status.gate`` in the JSON shape of ``GateReport.to_dict`` (what ``render_html`` reads);
    ``confidence`` and ``margin`` (the spec's) stand in where no verdict was recorded."""
    canary = _canary(gate, confidence, margin)
    smoke: dict[str, Any] = {
        "passed": bool(gate.smoke_passed),
        "checks": [c.to_dict() for c in gate.smoke],
    }
    if gate.contract_diff:
        smoke["contractDiff"] = list(gate.contract_diff)
    caught = [c.name for c in gate.smoke if not c.passed]
    caught += [c.name for c in gate.canary_checks if not c.passed]
    if canary.get("ran") and not canary.get("nonInferior"):
        caught.append("accuracy")
    decision = gate.decision or ("rollback" if gate.smoke_passed is False else "pending")
    return {
        "decision": decision,
        "smoke": smoke,
        "canary": canary,
        "reasons": list(gate.reasons),
        "warnings": list(gate.warnings),
        "caughtBy": caught,
    }


def render_gate_status(gate: GateStatus, *, confidence: float, margin: float, title: str) -> str:
    """The self-contained page for ``status.gate`` (at most :data:`MAX_HTML_BYTES`)."""
    report = gate_status_report(gate, confidence=confidence, margin=margin)
    return render_html(report, title=title)
