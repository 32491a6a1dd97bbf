"""Canary comparison: stable vs candidate on the same labelled golden set, paired.

Both models score the golden set concurrently. Predicted classes are read from the contract's
prediction output: ``argmax`` for probabilities/logits of width > 1, a threshold for width 1
(0.5 for probabilities, 0 for logits), the value itself for ``classIds``. The comparison is the
non-inferiority test of ``tensorgate.engine.stats``: the candidate passes iff the one-sided
upper confidence bound of ``stable_accuracy - candidate_accuracy`` is at most
``maxAccuracyDrop``. Agreement and the classes whose recall fell by more than the margin are
reported to help a human see *what* changed; they do not decide (with ten classes an equal
candidate's recall falls by more than a small margin in some class almost every time).

Labels are checked against the output's classes before anything is compared (a negative
label, or one at or above the output's width, names its rows). ``minAccuracy`` is an absolute
floor for the candidate. A stable model that does not beat the majority-class rate with
confidence, or a golden set too small to ever promote, gives a warning: such a golden set
cannot tell a good candidate from a broken one, so it must not look like a passed gate.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping

import numpy as np

from tensorgate.api.spec import OutputKind, TensorSpec
from tensorgate.engine.agreement import agreement_lower_bound
from tensorgate.engine.slices import SliceCounts, SliceTest, slice_tests
from tensorgate.engine.stats import minimum_samples, noninferiority, normal_ppf
from tensorgate.errors import ConfigError
from tensorgate.gate.golden import GoldenSet
from tensorgate.gate.report import CanaryReport, Check, ClassRecallChange
from tensorgate.serving.base import ModelClient, predict_batched

__all__ = [
    "accuracy_warnings",
    "check_labels",
    "compare",
    "output_classes",
    "predicted_classes",
    "recall_changes",
    "size_warning",
    "slice_counts",
    "slice_message",
]

MAX_RECALL_CHANGES = 20
MAX_ROWS_NAMED = 10


def output_classes(spec: TensorSpec, width: int | None = None) -> int | None:
    """How many classes an output can predict: its width (2 for a width-1 score), ``None``
    for ``classIds`` or when the width is not known (``width``: the served width, else the
    contract's fixed last dimension)."""
    if spec.kind in (OutputKind.CLASS_IDS, OutputKind.REGRESSION):
        return None
    if spec.kind is None and ("int" in str(spec.dtype)):
        return None  # read as class ids, like predicted_classes does
    if width is None:
        if len(spec.shape) != 2 or spec.shape[-1] < 1:
            return None
        width = spec.shape[-1]
    return 2 if width == 1 else width


def check_labels(labels: np.ndarray, classes: int | None, name: str = "labels") -> None:
    """Raise ``ConfigError`` naming the rows whose label is negative or not a class id."""
    bad = labels < 0 if classes is None else (labels < 0) | (labels >= classes)
    if not bad.any():
        return
    rows = np.flatnonzero(bad)
    shown = ", ".join(f"row {int(r)}: {int(labels[r])}" for r in rows[:MAX_ROWS_NAMED])
    more = f" (+{rows.size - MAX_ROWS_NAMED} more)" if rows.size > MAX_ROWS_NAMED else ""
    allowed = (
        "must be >= 0"
        if classes is None
        else f"must be in [0, {classes - 1}] (the output has {classes} classes)"
    )
    raise ConfigError(
        f"golden set: {rows.size} of {labels.size} {name} {allowed}: {shown}{more}; "
        "fix the labels or goldenSet.output"
    )


def size_warning(samples: int, margin: float, confidence: float) -> str | None:
    """A warning when even two identical models cannot promote on ``samples`` samples."""
    if margin <= 0.0:
        return (
            f"maxAccuracyDrop {margin} can never promote: a zero margin is never proven; "
            "see tensorgate plan"
        )
    needed = minimum_samples(margin, confidence)
    if samples >= needed:
        return None
    return (
        f"golden set of {samples} samples can never promote at maxAccuracyDrop {margin}, "
        f"confidence {confidence}: even identical models need >= {needed} (tensorgate plan)"
    )


def _wilson_lower(successes: int, n: int, confidence: float) -> float:
    z = normal_ppf(confidence)
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def accuracy_warnings(labels: np.ndarray, stable_right: np.ndarray, confidence: float) -> list[str]:
    """Warn when the stable model is not shown (one-sided Wilson bound at ``confidence``) to
    beat always answering the golden set's most frequent label."""
    n = int(labels.size)
    values, counts = np.unique(labels, return_counts=True)
    majority = float(counts.max()) / n
    correct = int(stable_right.sum())
    lower = _wilson_lower(correct, n, confidence)
    warnings = []
    if values.size == 1:
        warnings.append(
            f"golden set has a single label ({int(values[0])}): it cannot measure accuracy"
        )
    if lower <= majority:
        warnings.append(
            f"stable model scores near chance on the golden set: accuracy {correct / n:.4f} "
            f"(lower bound {lower:.4f}) <= majority-class rate {majority:.4f}; a golden set "
            "the stable model cannot solve cannot tell a good candidate from a broken one"
        )
    return warnings


def predicted_classes(output: np.ndarray, spec: TensorSpec, name: str = "output") -> np.ndarray:
    """Class ids ``(n,)`` from one output tensor, by the contract's ``kind``.

    Rows with non-finite values get class -1 (never correct).
    """
    arr = np.asarray(output)
    if arr.ndim == 0:
        raise ConfigError(f"output {name}: a scalar has no classes")
    n = arr.shape[0]
    flat = arr.reshape(n, -1)
    width = flat.shape[1]
    kind = spec.kind
    if kind == OutputKind.REGRESSION:
        raise ConfigError(
            f"output {name}: kind regression has no classes; set goldenSet.output to a "
            "probabilities, logits or classIds output"
        )
    if kind is None:
        kind = OutputKind.CLASS_IDS if arr.dtype.kind in "iu" else OutputKind.PROBABILITIES
    if kind == OutputKind.CLASS_IDS:
        if width != 1:
            raise ConfigError(f"output {name}: classIds must be one value per sample")
        values = flat[:, 0].astype(np.float64)
        good = np.isfinite(values)
        classes = np.full(n, -1, dtype=np.int64)
        classes[good] = values[good].astype(np.int64)
        return classes
    floats = flat.astype(np.float64)
    bad = ~np.isfinite(floats).all(axis=1)
    if width == 1:
        threshold = 0.5 if kind == OutputKind.PROBABILITIES else 0.0
        classes = (floats[:, 0] > threshold).astype(np.int64)
    else:
        classes = np.argmax(np.where(np.isfinite(floats), floats, -np.inf), axis=1)
    classes[bad] = -1
    return classes.astype(np.int64)


def recall_changes(
    labels: np.ndarray, stable: np.ndarray, candidate: np.ndarray, margin: float
) -> tuple[ClassRecallChange, ...]:
    """Classes whose recall fell by more than ``margin`` (largest drop first)."""
    changes = []
    for label in np.unique(labels):
        mask = labels == label
        support = int(mask.sum())
        rs = float(np.mean(stable[mask] == label))
        rc = float(np.mean(candidate[mask] == label))
        if rs - rc > margin:
            changes.append(ClassRecallChange(int(label), support, rs, rc))
    changes.sort(key=lambda c: (-c.drop, c.label))
    return tuple(changes[:MAX_RECALL_CHANGES])


def slice_counts(
    slices: np.ndarray, stable_right: np.ndarray, candidate_right: np.ndarray
) -> list[SliceCounts]:
    """Each slice's paired table, slices in sorted order."""
    only_stable = stable_right & ~candidate_right
    only_candidate = ~stable_right & candidate_right
    out = []
    for sid in np.unique(slices):
        mask = slices == sid
        out.append(
            SliceCounts(
                str(sid),
                int(mask.sum()),
                int(only_stable[mask].sum()),
                int(only_candidate[mask].sum()),
            )
        )
    return out


def slice_message(tests: list[SliceTest], margin: float, confidence: float, support: int) -> str:
    """One line: the flagged slices (largest drop first) or how many were tested."""
    tested = [t for t in tests if t.tested]
    flagged = sorted((t for t in tests if t.flagged), key=lambda t: (-t.drop, t.slice))
    untested = len(tests) - len(tested)
    scope = (
        f"{len(tested)} of {len(tests)} slices tested"
        + (f" ({untested} below minSliceSupport {support})" if untested else "")
        + f", Holm at confidence {confidence}"
    )
    if not flagged:
        return f"no slice lost more than maxSliceAccuracyDrop {margin}: {scope}"
    shown = ", ".join(
        f"{t.slice} drop {t.drop:.4f} (n={t.n}, p={t.p_value:.3g})" for t in flagged[:5]
    )
    more = f" (+{len(flagged) - 5} more)" if len(flagged) > 5 else ""
    return (
        f"{len(flagged)} slice(s) lost more than maxSliceAccuracyDrop {margin}: "
        f"{shown}{more}; {scope}"
    )


def _finite_check(name: str, who: str, output: np.ndarray) -> Check:
    arr = np.asarray(output)
    if arr.dtype.kind not in "fc":
        return Check(f"{who}-finite", True, f"{who} output {name} is not floating point")
    rows = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    if rows.any():
        return Check(
            f"{who}-finite",
            False,
            f"{who} output {name}: non-finite values in {int(rows.sum())} of {rows.size} "
            "golden-set samples",
        )
    return Check(f"{who}-finite", True, f"{who} output {name} is finite on the golden set")


async def _agreement(
    stable: ModelClient,
    candidate: ModelClient,
    golden: GoldenSet,
    output: str,
    spec: TensorSpec,
) -> tuple[int, int] | None:
    """(agreed, scored) on the unlabeled production inputs, or None without them."""
    if golden.unlabeled is None:
        return None
    outs = await asyncio.gather(
        predict_batched(stable, golden.unlabeled), predict_batched(candidate, golden.unlabeled)
    )
    for who, out in zip(("stable", "candidate"), outs, strict=True):
        if output not in out:
            raise ConfigError(f"{who} model does not answer output {output!r} on unlabeled")
    ps, pc = (predicted_classes(out[output], spec, output) for out in outs)
    return int(np.sum((ps == pc) & (ps >= 0))), int(ps.size)


async def compare(
    stable: ModelClient,
    candidate: ModelClient,
    golden: GoldenSet,
    *,
    prediction_output: str,
    output_spec: TensorSpec,
    max_accuracy_drop: float,
    confidence: float,
    candidate_outputs: Mapping[str, np.ndarray] | None = None,
    on_progress: Callable[[int], None] | None = None,
    min_accuracy: float | None = None,
    slice_margin: float | None = None,
    min_slice_support: int = 30,
    decide_on_slices: bool = False,
    min_agreement: float | None = None,
) -> CanaryReport:
    """Score both models (the candidate only if its outputs are not given) and compare."""
    if golden.labels is None:
        raise ConfigError("golden set: the canary comparison needs labels")
    check_labels(golden.labels, output_classes(output_spec))
    started = time.perf_counter()

    async def score(client: ModelClient) -> Mapping[str, np.ndarray]:
        return await predict_batched(client, golden.inputs, on_progress=on_progress)

    async def given() -> Mapping[str, np.ndarray]:
        assert candidate_outputs is not None
        return candidate_outputs

    stable_out, cand_out = await asyncio.gather(
        score(stable), given() if candidate_outputs is not None else score(candidate)
    )
    unlabeled = await _agreement(stable, candidate, golden, prediction_output, output_spec)
    for who, out in (("stable", stable_out), ("candidate", cand_out)):
        if prediction_output not in out:
            raise ConfigError(
                f"{who} model does not answer output {prediction_output!r} "
                f"(answered: {sorted(out)})"
            )
        if out[prediction_output].shape[0] != golden.size:
            raise ConfigError(
                f"{who} model answered {out[prediction_output].shape[0]} rows for "
                f"{golden.size} golden samples"
            )

    width = int(np.asarray(stable_out[prediction_output]).reshape(golden.size, -1).shape[1])
    check_labels(golden.labels, output_classes(output_spec, width))
    checks = []
    if candidate_outputs is None:  # smoke did not already check the candidate's golden outputs
        checks.append(_finite_check(prediction_output, "candidate", cand_out[prediction_output]))
    stable_finite = _finite_check(prediction_output, "stable", stable_out[prediction_output])

    labels = golden.labels
    ps = predicted_classes(stable_out[prediction_output], output_spec, prediction_output)
    pc = predicted_classes(cand_out[prediction_output], output_spec, prediction_output)
    stable_right = ps == labels
    cand_right = pc == labels
    n = int(labels.size)
    b = int(np.sum(stable_right & ~cand_right))
    c = int(np.sum(~stable_right & cand_right))
    result = noninferiority(b, c, n, max_accuracy_drop, confidence)
    if not stable_finite.passed:
        checks.append(Check("stable-finite", True, f"warning: {stable_finite.message}"))
    candidate_accuracy = float(cand_right.mean())
    if min_accuracy is not None:
        relation = ">=" if candidate_accuracy >= min_accuracy else "<"
        checks.append(
            Check(
                "min-accuracy",
                candidate_accuracy >= min_accuracy,
                f"candidate accuracy {candidate_accuracy:.4f} {relation} minAccuracy "
                f"{min_accuracy}",
            )
        )
    warnings = accuracy_warnings(labels, stable_right, confidence)
    too_small = size_warning(n, max_accuracy_drop, confidence)
    if too_small is not None:
        warnings.insert(0, too_small)
    slices: tuple[SliceTest, ...] = ()
    margin_s = max_accuracy_drop if slice_margin is None else slice_margin
    if golden.slices is not None:
        counts = slice_counts(golden.slices, stable_right, cand_right)
        tests = slice_tests(
            counts, margin=margin_s, confidence=confidence, min_support=min_slice_support
        )
        slices = tuple(tests)
        message = slice_message(tests, margin_s, confidence, min_slice_support)
        if decide_on_slices:
            checks.append(Check("slices", not any(t.flagged for t in tests), message))
        elif any(t.flagged for t in tests):
            warnings.append(f"{message} (reported only: decideOnSlices is false)")
    if unlabeled is not None:
        agreed, total = unlabeled
        lower = agreement_lower_bound(agreed, total, confidence)
        if min_agreement is not None:
            relation = ">=" if lower >= min_agreement else "<"
            checks.append(
                Check(
                    "agreement",
                    lower >= min_agreement,
                    f"agreement on {total} unlabeled samples {agreed / total:.4f} (lower bound "
                    f"{lower:.4f}) {relation} minAgreement {min_agreement}",
                )
            )
    elif min_agreement is not None:
        raise ConfigError("analysis.minAgreement needs goldenSet.unlabeled (production inputs)")
    return CanaryReport(
        ran=True,
        samples=n,
        stable_accuracy=float(stable_right.mean()),
        candidate_accuracy=candidate_accuracy,
        drop=result.drop,
        upper_bound=result.upper_bound,
        p_value=result.p_value,
        confidence=confidence,
        max_accuracy_drop=max_accuracy_drop,
        stable_only_correct=b,
        candidate_only_correct=c,
        agreement=float(np.mean(ps == pc)),
        method=result.method,
        non_inferior=result.is_non_inferior,
        recall_changes=recall_changes(labels, ps, pc, max_accuracy_drop),
        checks=tuple(checks),
        warnings=tuple(warnings),
        slices=slices,
        slice_margin=margin_s if golden.slices is not None else None,
        min_slice_support=min_slice_support if golden.slices is not None else None,
        decide_on_slices=decide_on_slices and golden.slices is not None,
        unlabeled_samples=unlabeled[1] if unlabeled else None,
        unlabeled_agreed=unlabeled[0] if unlabeled else None,
        min_agreement=min_agreement,
        elapsed_s=time.perf_counter() - started,
    )
