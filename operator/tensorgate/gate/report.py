"""The gate's results: named checks, the smoke and canary reports, the decision.

All are frozen dataclasses with a ``to_dict`` that gives the camelCase JSON form printed by
``tensorgate gate --json`` and written to ``status.gate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tensorgate.api.status import SliceVerdict, VerdictRecord
from tensorgate.engine.agreement import agreement_lower_bound
from tensorgate.engine.slices import SliceTest
from tensorgate.engine.stats import METHOD
from tensorgate.gate.contract_diff import ContractDiff

__all__ = [
    "CanaryReport",
    "Check",
    "ClassRecallChange",
    "Decision",
    "GateReport",
    "SmokeReport",
]


RECOMPUTED = frozenset({"slices", "agreement"})
"""Canary checks that ``replay_verdict`` recomputes (so ``checksPassed`` leaves them out)."""


class Decision(StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Check:
    """One named check: ``passed`` and a human message (observed vs expected)."""

    name: str
    passed: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "message": self.message}


@dataclass(frozen=True)
class SmokeReport:
    checks: tuple[Check, ...]
    contract_diff: ContractDiff | None = None  # vs the stable model's signature, when known

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
        }
        if self.contract_diff is not None:
            out["contractDiff"] = self.contract_diff.to_dict()
        return out


@dataclass(frozen=True)
class ClassRecallChange:
    """A class whose recall fell by more than the margin."""

    label: int
    support: int
    stable_recall: float
    candidate_recall: float

    @property
    def drop(self) -> float:
        return self.stable_recall - self.candidate_recall

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "support": self.support,
            "stableRecall": round(self.stable_recall, 6),
            "candidateRecall": round(self.candidate_recall, 6),
            "drop": round(self.drop, 6),
        }


@dataclass(frozen=True)
class CanaryReport:
    """The paired accuracy comparison; ``ran`` is false when smoke failed first."""

    ran: bool
    samples: int = 0
    stable_accuracy: float | None = None
    candidate_accuracy: float | None = None
    drop: float | None = None
    upper_bound: float | None = None
    p_value: float | None = None
    confidence: float | None = None
    max_accuracy_drop: float | None = None
    stable_only_correct: int = 0
    candidate_only_correct: int = 0
    agreement: float | None = None
    method: str = METHOD
    non_inferior: bool = False
    recall_changes: tuple[ClassRecallChange, ...] = ()
    checks: tuple[Check, ...] = ()
    warnings: tuple[str, ...] = ()
    slices: tuple[SliceTest, ...] = ()
    slice_margin: float | None = None
    min_slice_support: int | None = None
    decide_on_slices: bool = False
    unlabeled_samples: int | None = None
    unlabeled_agreed: int | None = None
    min_agreement: float | None = None
    elapsed_s: float | None = None

    @property
    def unlabeled_agreement(self) -> float | None:
        """Prediction agreement on the unlabeled production inputs."""
        if not self.unlabeled_samples or self.unlabeled_agreed is None:
            return None
        return self.unlabeled_agreed / self.unlabeled_samples

    @property
    def agreement_lower_bound(self) -> float | None:
        """Its exact one-sided lower bound at ``confidence``."""
        if not self.unlabeled_samples or self.unlabeled_agreed is None or not self.confidence:
            return None
        return agreement_lower_bound(self.unlabeled_agreed, self.unlabeled_samples, self.confidence)

    @property
    def passed(self) -> bool:
        """Every check passed and the non-inferiority test promotes (``T(m) <= -z``)."""
        return self.ran and all(c.passed for c in self.checks) and self.non_inferior

    @property
    def verdict(self) -> VerdictRecord | None:
        """What the verdict was decided from (``replay_verdict(verdict.to_dict())``)."""
        if not self.ran or self.confidence is None or self.max_accuracy_drop is None:
            return None
        return VerdictRecord(
            n=self.samples,
            b=self.stable_only_correct,
            c=self.candidate_only_correct,
            confidence=self.confidence,
            margin=self.max_accuracy_drop,
            method=self.method,
            checks_passed=all(c.passed for c in self.checks if c.name not in RECOMPUTED),
            slices=[SliceVerdict(slice=t.slice, n=t.n, b=t.b, c=t.c) for t in self.slices],
            slice_margin=self.slice_margin,
            min_slice_support=self.min_slice_support,
            decide_on_slices=self.decide_on_slices,
            unlabeled_samples=self.unlabeled_samples,
            unlabeled_agreed=self.unlabeled_agreed,
            min_agreement=self.min_agreement,
        )

    def to_dict(self) -> dict[str, Any]:
        if not self.ran:
            return {"ran": False}

        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 6)

        return {
            "ran": True,
            "passed": self.passed,
            "samples": self.samples,
            "stableAccuracy": r(self.stable_accuracy),
            "candidateAccuracy": r(self.candidate_accuracy),
            "drop": r(self.drop),
            "upperBound": r(self.upper_bound),
            "pValue": None if self.p_value is None else float(f"{self.p_value:.6g}"),
            "confidence": self.confidence,
            "maxAccuracyDrop": self.max_accuracy_drop,
            "method": self.method,
            "discordant": {
                "stableOnlyCorrect": self.stable_only_correct,
                "candidateOnlyCorrect": self.candidate_only_correct,
            },
            "nonInferior": self.non_inferior,
            "agreement": r(self.agreement),
            "classRecallChanges": [c.to_dict() for c in self.recall_changes],
            "checks": [c.to_dict() for c in self.checks],
            "warnings": list(self.warnings),
            "slices": [
                {
                    "slice": t.slice,
                    "samples": t.n,
                    "drop": r(t.drop),
                    "pValue": None if t.p_value is None else float(f"{t.p_value:.6g}"),
                    "tested": t.tested,
                    "flagged": t.flagged,
                }
                for t in self.slices
            ],
            "unlabeled": None
            if self.unlabeled_samples is None
            else {
                "samples": self.unlabeled_samples,
                "agreement": r(self.unlabeled_agreement),
                "lowerBound": r(self.agreement_lower_bound),
                "minAgreement": self.min_agreement,
            },
            "verdict": verdict.to_dict() if (verdict := self.verdict) else None,
        }


@dataclass(frozen=True)
class GateReport:
    decision: Decision
    smoke: SmokeReport
    canary: CanaryReport
    reasons: tuple[str, ...] = field(default_factory=tuple)
    elapsed_s: float | None = None
    warnings: tuple[str, ...] = ()

    @property
    def caught_by(self) -> list[str]:
        """Names of the checks that failed (``accuracy`` for the non-inferiority test)."""
        names = [c.name for c in self.smoke.failed]
        names += [c.name for c in self.canary.checks if not c.passed]
        if self.canary.ran and not self.canary.non_inferior:
            names.append("accuracy")
        return names

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision": str(self.decision),
            "smoke": self.smoke.to_dict(),
            "canary": self.canary.to_dict(),
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "caughtBy": self.caught_by,
        }
        if self.elapsed_s is not None:
            out["elapsedSeconds"] = round(self.elapsed_s, 3)
        return out
