"""Per-slice accuracy tests with Holm's correction: pure functions, no I/O.

A slice is a group of golden-set samples sharing an id (a class, a country, a device). The
overall gate proves the candidate is non-inferior on average; a slice test asks the mirror
question of every slice with at least ``min_support`` samples: is there evidence that the
candidate loses more than ``margin`` (``maxSliceAccuracyDrop``) on it?

    H0_s: drop_s <= margin   (the slice is fine)      H1_s: drop_s > margin   (it broke)

Each p-value comes from the same corrected score statistic as the overall gate, with the
correction turned against flagging (``b - c - cc``). Holm's step-down procedure over the
tested slices keeps the probability of flagging *any* fine slice at most ``1 - confidence``
under any dependence between slices; a truly-equal candidate (every ``drop_s = 0``) is thus
rolled back by the slice tests at most that often, with 10 slices or 100. Holm flags at least
one slice exactly when the smallest p-value is at most ``alpha / k``, so for independent
slices that probability is ``1 - prod_s (1 - P(p_s <= alpha / k))``, which
``false_rollback_probability`` computes exactly.

The old per-class recall list ("recall fell by more than the margin") flags some class for
almost every equal candidate with ten classes; it stays in the report as information only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tensorgate.engine.planner import probability
from tensorgate.engine.stats import (
    METHOD,
    continuity_correction,
    normal_cdf,
    normal_ppf,
    score_statistic,
    score_statistics,
)

__all__ = [
    "SliceCounts",
    "SliceTest",
    "false_rollback_probability",
    "holm",
    "inferiority_p_value",
    "slice_tests",
]


@dataclass(frozen=True)
class SliceCounts:
    """One slice's paired table: ``n`` samples, ``b`` only-stable-right, ``c`` only-candidate."""

    slice: str
    n: int
    b: int
    c: int


@dataclass(frozen=True)
class SliceTest:
    """A slice's result: ``tested`` when it had the support, ``flagged`` when Holm's procedure
    found its drop above the margin."""

    slice: str
    n: int
    b: int
    c: int
    p_value: float | None
    tested: bool
    flagged: bool

    @property
    def drop(self) -> float:
        return (self.b - self.c) / self.n if self.n else 0.0

    @property
    def passed(self) -> bool:
        return not self.flagged


def inferiority_p_value(b: int, c: int, n: int, margin: float, *, method: str = METHOD) -> float:
    """p-value of ``H0: drop <= margin`` against ``H1: drop > margin`` (small = it broke)."""
    cc = continuity_correction(b, c, n, method=method)
    return normal_cdf(-score_statistic(b, c, n, margin, continuity=-cc))


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise ``alpha``."""
    k = len(p_values)
    rejected = [False] * k
    for rank, index in enumerate(sorted(range(k), key=lambda i: p_values[i])):
        if p_values[index] > alpha / (k - rank):
            break
        rejected[index] = True
    return rejected


def slice_tests(
    counts: Sequence[SliceCounts],
    *,
    margin: float,
    confidence: float,
    min_support: int,
    method: str = METHOD,
) -> list[SliceTest]:
    """Test every slice with ``n >= min_support``; Holm's correction across those."""
    tested = [s for s in counts if s.n >= min_support]
    p_values = [inferiority_p_value(s.b, s.c, s.n, margin, method=method) for s in tested]
    flags = dict(zip((s.slice for s in tested), holm(p_values, 1.0 - confidence), strict=True))
    by_slice = dict(zip((s.slice for s in tested), p_values, strict=True))
    return [
        SliceTest(
            slice=s.slice,
            n=s.n,
            b=s.b,
            c=s.c,
            p_value=by_slice.get(s.slice),
            tested=s.slice in by_slice,
            flagged=flags.get(s.slice, False),
        )
        for s in counts
    ]


def false_rollback_probability(
    sizes: Sequence[int],
    disagreement: float,
    *,
    margin: float,
    confidence: float,
    min_support: int = 1,
    method: str = METHOD,
) -> float:
    """Exact probability that the slice tests flag any slice of a truly-equal candidate.

    Slices are independent, with ``sizes`` samples each, and in every one the two models
    disagree on correctness at rate ``disagreement`` with no drop (``p_b = p_c = d / 2``).
    """
    tested = [n for n in sizes if n >= min_support]
    if not tested:
        return 0.0
    level = (1.0 - confidence) / len(tested)
    z = normal_ppf(1.0 - level)
    half = disagreement / 2.0
    keep = 1.0
    for n, count in Counter(tested).items():

        def flags(
            b: npt.NDArray[np.int64], c: npt.NDArray[np.int64], n: int = n
        ) -> npt.NDArray[np.bool_]:
            stat = score_statistics(b, c, n, margin, method=method, direction=-1.0)
            return np.asarray(stat >= z, dtype=np.bool_)

        prob = probability(n, half, half, flags)
        keep *= (1.0 - min(1.0, prob.value + prob.missing)) ** count
    return 1.0 - keep
