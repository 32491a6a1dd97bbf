"""Canary comparison: stable vs candidate on the same labelled golden set, paired.

Both models score the golden set concurrently. Predicted classes are read from the contract's
prediction output: ``argmax`` for probabilities/logits of width > 1, a threshold for width 1
(0.5 for probabilities, 0 for logits), the value itself for ``classIds``. The comparison is the
non-inferiority test of ``tensorgate.engine.stats``: the candidate passes iff the one-sided
upper confidence bound of ``stable_accuracy - candidate_accuracy`` is at most
``maxAccuracyDrop``. Agreement and the classes whose recall fell by more than the margin are
reported to help a human see *what* changed; they do not decide.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import numpy as np

from tensorgate.api.spec import OutputKind, TensorSpec
from tensorgate.engine.stats import noninferiority
from tensorgate.errors import ConfigError
from tensorgate.gate.golden import GoldenSet
from tensorgate.gate.report import CanaryReport, Check, ClassRecallChange
from tensorgate.serving.base import ModelClient, predict_batched

__all__ = ["compare", "predicted_classes", "recall_changes"]

MAX_RECALL_CHANGES = 20


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
) -> CanaryReport:
    """Score both models (the candidate only if its outputs are not given) and compare."""
    if golden.labels is None:
        raise ConfigError("golden set: the canary comparison needs labels")
    started = time.perf_counter()

    async def score(client: ModelClient) -> Mapping[str, np.ndarray]:
        return await predict_batched(client, golden.inputs, on_progress=on_progress)

    async def given() -> Mapping[str, np.ndarray]:
        assert candidate_outputs is not None
        return candidate_outputs

    stable_out, cand_out = await asyncio.gather(
        score(stable), given() if candidate_outputs is not None else score(candidate)
    )
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
    return CanaryReport(
        ran=True,
        samples=n,
        stable_accuracy=float(stable_right.mean()),
        candidate_accuracy=float(cand_right.mean()),
        drop=result.drop,
        upper_bound=result.upper_bound,
        p_value=result.p_value,
        confidence=confidence,
        max_accuracy_drop=max_accuracy_drop,
        stable_only_correct=b,
        candidate_only_correct=c,
        agreement=float(np.mean(ps == pc)),
        method=result.method,
        recall_changes=recall_changes(labels, ps, pc, max_accuracy_drop),
        checks=tuple(checks),
        elapsed_s=time.perf_counter() - started,
    )
