"""The whole gate: smoke inference on the candidate, then the canary comparison.

``run_gate`` is what the operator's SmokeTesting/Evaluating phases and ``tensorgate gate`` call.
It is handed two ``ModelClient``s and never picks a transport itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tensorgate.api.spec import (
    AnalysisSpec,
    ContractSpec,
    GoldenSetSpec,
    ModelDeploymentSpec,
    SmokeSpec,
)
from tensorgate.api.status import CheckResult, ClassRecall
from tensorgate.errors import ConfigError, ServingError
from tensorgate.gate.canary import check_labels, compare, output_classes, size_warning
from tensorgate.gate.golden import GoldenSet
from tensorgate.gate.report import CanaryReport, Decision, GateReport, SmokeReport
from tensorgate.gate.smoke import run_smoke
from tensorgate.serving.base import ModelClient, Signature

__all__ = [
    "GateConfig",
    "Progress",
    "canary_reasons",
    "compare_with",
    "gate_status_fields",
    "pre_run_warnings",
    "run_gate",
    "smoke_reasons",
    "stable_signature_of",
]


class Progress:
    """Progress callbacks (no-ops by default): ``stage(name, total)`` then ``advance(k)``."""

    def stage(self, name: str, total: int) -> None:
        """A stage that will process ``total`` samples begins."""

    def advance(self, count: int) -> None:
        """``count`` more samples are done."""


@dataclass(frozen=True)
class GateConfig:
    """Everything the gate needs from the spec (see ``GateConfig.from_spec``)."""

    contract: ContractSpec
    smoke: SmokeSpec = field(default_factory=SmokeSpec)
    max_accuracy_drop: float = 0.02
    confidence: float = 0.95
    prediction_output: str | None = None
    parity_tolerance: float = 1e-3
    min_accuracy: float | None = None
    slices: str | None = None
    slice_margin: float | None = None
    min_slice_support: int = 30
    decide_on_slices: bool = False
    min_agreement: float | None = None

    @classmethod
    def from_spec(cls, spec: ModelDeploymentSpec) -> GateConfig:
        return cls(
            contract=spec.contract,
            smoke=spec.smoke,
            max_accuracy_drop=spec.analysis.max_accuracy_drop,
            confidence=spec.analysis.confidence,
            prediction_output=spec.prediction_output,
            parity_tolerance=spec.golden_set.parity_tolerance if spec.golden_set else 1e-3,
            min_accuracy=spec.analysis.min_accuracy,
            slices=spec.analysis.slices,
            slice_margin=spec.analysis.max_slice_accuracy_drop,
            min_slice_support=spec.analysis.min_slice_support,
            decide_on_slices=spec.analysis.decide_on_slices,
            min_agreement=spec.analysis.min_agreement,
        )

    @classmethod
    def build(
        cls,
        contract: ContractSpec,
        *,
        smoke: SmokeSpec | None = None,
        analysis: AnalysisSpec | None = None,
        golden_set: GoldenSetSpec | None = None,
    ) -> GateConfig:
        analysis = analysis or AnalysisSpec()
        output = golden_set.output if golden_set else None
        if output is not None and output not in contract.outputs:
            raise ConfigError(f"goldenSet.output {output!r} is not a contract output")
        return cls(
            contract=contract,
            smoke=smoke or SmokeSpec(),
            max_accuracy_drop=analysis.max_accuracy_drop,
            confidence=analysis.confidence,
            prediction_output=output,
            parity_tolerance=golden_set.parity_tolerance if golden_set else 1e-3,
            min_accuracy=analysis.min_accuracy,
            slices=analysis.slices,
            slice_margin=analysis.max_slice_accuracy_drop,
            min_slice_support=analysis.min_slice_support,
            decide_on_slices=analysis.decide_on_slices,
            min_agreement=analysis.min_agreement,
        )

    @property
    def output_name(self) -> str:
        return self.prediction_output or next(iter(self.contract.outputs))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def smoke_reasons(smoke: SmokeReport) -> list[str]:
    """One line per failed smoke check."""
    return [f"smoke check {c.name} failed: {c.message}" for c in smoke.failed]


def canary_reasons(canary: CanaryReport) -> list[str]:
    """Failed canary checks, then the non-inferiority verdict with its numbers."""
    bound, limit = canary.upper_bound, canary.max_accuracy_drop
    relation = "<=" if canary.non_inferior else ">"
    why = [f"canary check {c.name} failed: {c.message}" for c in canary.checks if not c.passed]
    why.append(
        f"accuracy drop upper bound {_fmt(bound)} {relation} maxAccuracyDrop {limit} "
        f"(stable {_fmt(canary.stable_accuracy)}, candidate {_fmt(canary.candidate_accuracy)}, "
        f"n={canary.samples}, confidence {canary.confidence})"
    )
    return why


async def stable_signature_of(stable: ModelClient, name: str) -> Signature | None:
    """The stable model's served signature ``name``, or None when it cannot be read."""
    try:
        meta = await stable.metadata()
    except ServingError:
        return None
    return meta.signatures.get(name)


def pre_run_warnings(golden: GoldenSet, config: GateConfig) -> list[str]:
    """Check the labels against the output's classes (``ConfigError`` naming the rows) and
    warn when the golden set is too small to ever promote, before any model is called."""
    if golden.labels is not None:
        check_labels(golden.labels, output_classes(config.contract.outputs[config.output_name]))
    if config.min_agreement is not None and golden.unlabeled is None:
        raise ConfigError("analysis.minAgreement needs goldenSet.unlabeled (production inputs)")
    if config.slices is not None and golden.slices is None:
        raise ConfigError(
            f"analysis.slices {config.slices!r}: the golden set was loaded without it "
            "(load_golden(..., slices=...))"
        )
    warning = size_warning(golden.size, config.max_accuracy_drop, config.confidence)
    return [warning] if warning else []


async def compare_with(
    stable: ModelClient,
    candidate: ModelClient,
    golden: GoldenSet,
    config: GateConfig,
    *,
    candidate_outputs: Mapping[str, np.ndarray] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> CanaryReport:
    """``canary.compare`` with everything it needs taken from ``config``."""
    output = config.output_name
    return await compare(
        stable,
        candidate,
        golden,
        prediction_output=output,
        output_spec=config.contract.outputs[output],
        max_accuracy_drop=config.max_accuracy_drop,
        confidence=config.confidence,
        candidate_outputs=candidate_outputs,
        on_progress=on_progress,
        min_accuracy=config.min_accuracy,
        slice_margin=config.slice_margin,
        min_slice_support=config.min_slice_support,
        decide_on_slices=config.decide_on_slices,
        min_agreement=config.min_agreement,
    )


def gate_status_fields(canary: CanaryReport) -> dict[str, Any]:
    """The ``GateStatus`` fields a canary comparison sets (``model_copy(update=...)``)."""
    return {
        "compared": True,
        "decision": "promote" if canary.passed else "rollback",
        "stable_accuracy": canary.stable_accuracy,
        "canary_accuracy": canary.candidate_accuracy,
        "delta": canary.drop,
        "upper_bound": canary.upper_bound,
        "p_value": canary.p_value,
        "samples": canary.samples,
        "agreement": canary.agreement,
        "method": canary.method,
        "verdict": canary.verdict,
        "warnings": list(canary.warnings),
        "canary_checks": [
            CheckResult(name=c.name, passed=c.passed, message=c.message) for c in canary.checks
        ],
        "reasons": canary_reasons(canary),
        "class_recall_changes": [
            ClassRecall(
                label=c.label,
                support=c.support,
                stable_recall=c.stable_recall,
                candidate_recall=c.candidate_recall,
            )
            for c in canary.recall_changes
        ],
    }


async def run_gate(
    stable: ModelClient,
    candidate: ModelClient,
    golden: GoldenSet,
    config: GateConfig,
    *,
    progress: Progress | None = None,
) -> GateReport:
    """Smoke-test the candidate; when it passes, compare it with the stable model."""
    progress = progress or Progress()
    started = time.perf_counter()
    warnings = pre_run_warnings(golden, config)
    stable_signature = await stable_signature_of(stable, config.contract.signature)
    if stable_signature is None:
        warnings.append(
            f"no contract diff: the stable model's signature {config.contract.signature!r} "
            "could not be read"
        )
    progress.stage("smoke: candidate", golden.size)
    smoke_result = await run_smoke(
        candidate,
        config.contract,
        config.smoke,
        golden,
        parity_tolerance=config.parity_tolerance,
        on_progress=progress.advance,
        stable_signature=stable_signature,
    )
    smoke = smoke_result.report
    if not smoke.passed:
        reasons = tuple(smoke_reasons(smoke))
        return GateReport(
            Decision.ROLLBACK,
            smoke,
            CanaryReport(ran=False),
            reasons,
            time.perf_counter() - started,
            tuple(warnings),
        )
    progress.stage("canary: stable", golden.size)
    canary = await compare_with(
        stable,
        candidate,
        golden,
        config,
        candidate_outputs=smoke_result.golden_outputs,
        on_progress=progress.advance,
    )
    decision = Decision.PROMOTE if canary.passed else Decision.ROLLBACK
    warnings += [w for w in canary.warnings if w not in warnings]
    return GateReport(
        decision,
        smoke,
        canary,
        tuple(canary_reasons(canary)),
        time.perf_counter() - started,
        tuple(warnings),
    )
