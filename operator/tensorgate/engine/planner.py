"""Exact operating characteristics of the accuracy gate, and the golden-set planner.

Pure functions, no I/O. Every number here is computed from the gate's own decision
(``tensorgate.engine.stats.promotes``), summed over the exact multinomial distribution of the
discordant counts ``(b, c)`` of ``n`` paired samples; nothing is simulated.

With per-sample probabilities ``p_b`` (only the stable model right) and ``p_c`` (only the
candidate right), the true accuracy drop is ``p_b - p_c`` and the disagreement rate on labels
is ``p_b + p_c``:

- the **size** (false-promotion probability) at a null point is ``P(promote)`` with
  ``p_b - p_c = margin`` (a candidate truly worse by exactly the margin; worse still can only
  promote less often, since the decision is monotone in ``b`` and ``c``);
- the **power** at a true drop of 0 with disagreement ``d`` is ``P(promote)`` with
  ``p_b = p_c = d / 2``.

The sum runs over the discordant counts ``k = b + c`` within ``WINDOW_SD`` standard
deviations (plus ``WINDOW_PAD`` counts) of their mean, and for each the ``b`` within as many of
theirs; ``Probability.missing`` is the mass outside the window, an upper
bound of the error (the tests add it to the size before comparing it with the limit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tensorgate.engine.stats import METHOD, minimum_samples, promotes

__all__ = [
    "MAX_PLANNED_SAMPLES",
    "Decision",
    "Plan",
    "Probability",
    "plan",
    "power",
    "probability",
    "promotion_probability",
    "samples_for_power",
]

WINDOW_SD = 8.0
WINDOW_PAD = 6
MAX_PLANNED_SAMPLES = 10_000_000


@dataclass(frozen=True)
class Probability:
    """``value``: the summed probability; ``missing``: the mass left outside the window."""

    value: float
    missing: float


def _log_factorials(n: int) -> npt.NDArray[np.float64]:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])


def _window(n: int, p: float) -> tuple[int, int]:
    mean = n * p
    sd = math.sqrt(n * p * (1.0 - p))
    return max(0, math.floor(mean - WINDOW_SD * sd - WINDOW_PAD)), min(
        n, math.ceil(mean + WINDOW_SD * sd + WINDOW_PAD)
    )


def _xlogy(x: npt.NDArray[np.float64], p: float) -> npt.NDArray[np.float64]:
    if p > 0.0:
        return x * math.log(p)
    return np.where(x == 0, 0.0, -np.inf)


Decision = Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], npt.NDArray[np.bool_]]
"""A vectorised decision on tables ``(b, c)`` of one ``n``: ``True`` where it fires."""


def promotion_probability(
    n: int,
    p_b: float,
    p_c: float,
    margin: float,
    confidence: float,
    *,
    method: str = METHOD,
) -> Probability:
    """Exact ``P(the gate promotes)`` when ``(b, c, rest) ~ Multinomial(n; p_b, p_c, rest)``."""

    def decide(b: npt.NDArray[np.int64], c: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return promotes(b, c, n, margin, confidence, method=method)

    return probability(n, p_b, p_c, decide)


def probability(n: int, p_b: float, p_c: float, decide: Decision) -> Probability:
    """Exact ``P(decide(b, c))`` when ``(b, c, rest) ~ Multinomial(n; p_b, p_c, rest)``."""
    if n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    if p_b < 0.0 or p_c < 0.0 or p_b + p_c > 1.0:
        raise ValueError(f"need p_b, p_c >= 0 and p_b + p_c <= 1 (got {p_b}, {p_c})")
    # Enumerate by the discordant count k = b + c ~ Bin(n, p_b + p_c), then b given k ~
    # Bin(k, p_b / (p_b + p_c)): both windows are narrow, even when every sample is discordant.
    discordance = min(1.0, p_b + p_c)
    share = p_b / discordance if discordance > 0.0 else 0.0
    k_lo, k_hi = _window(n, discordance)
    half = math.ceil(WINDOW_SD * math.sqrt(k_hi * share * (1.0 - share)) + WINDOW_PAD)
    k = np.arange(k_lo, k_hi + 1, dtype=np.int64)[:, None]
    offsets = np.arange(-half, half + 1, dtype=np.int64)[None, :]
    bi = np.floor(k * share).astype(np.int64) + offsets
    valid = (bi >= 0) & (bi <= k)
    bi = np.where(valid, bi, 0)
    ci = np.where(valid, k - bi, 0)
    rest = n - bi - ci
    lf = _log_factorials(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = (
            lf[n]
            - lf[bi]
            - lf[ci]
            - lf[rest]
            + _xlogy(bi.astype(np.float64), p_b)
            + _xlogy(ci.astype(np.float64), p_c)
            + _xlogy(rest.astype(np.float64), 1.0 - p_b - p_c)
        )
        pmf = np.where(valid, np.exp(log_pmf), 0.0)
    inside = float(pmf.sum())
    decided = decide(bi, ci) & valid
    value = float(pmf[decided].sum())
    return Probability(value=value, missing=max(0.0, 1.0 - inside))


def power(
    n: int, margin: float, confidence: float, disagreement: float, *, method: str = METHOD
) -> float:
    """Exact probability that a candidate with a true drop of 0 and the given disagreement
    rate with the stable model's correctness (``p_b = p_c = disagreement / 2``) promotes."""
    half = disagreement / 2.0
    return promotion_probability(n, half, half, margin, confidence, method=method).value


def samples_for_power(
    margin: float,
    confidence: float,
    disagreement: float,
    target: float,
    *,
    method: str = METHOD,
) -> int:
    """The smallest ``n`` at which the exact power (true drop 0) reaches ``target``.

    Power is not monotone in ``n`` (the discreteness makes a saw-tooth), so the answer is the
    first ``n`` that reaches it: ``power(n) >= target > power(n - 1)``.
    """
    if not 0.0 <= disagreement <= 1.0:
        raise ValueError(f"disagreement must be in [0, 1] (got {disagreement})")
    if not 0.0 < target < 1.0:
        raise ValueError(f"target power must be in (0, 1) (got {target})")
    low = minimum_samples(margin, confidence, method=method)

    def reaches(n: int) -> bool:
        return power(n, margin, confidence, disagreement, method=method) >= target

    if reaches(low):
        return low
    high = low
    while not reaches(high):
        low, high = high, high * 2
        if high > MAX_PLANNED_SAMPLES:
            raise ValueError(
                f"more than {MAX_PLANNED_SAMPLES} samples needed for power {target} at "
                f"margin {margin} and disagreement {disagreement}"
            )
    while high - low > 1:  # reaches(high) and not reaches(low)
        mid = (low + high) // 2
        if reaches(mid):
            high = mid
        else:
            low = mid
    while high > 1 and reaches(high - 1):  # a saw-tooth tooth below the bisection point
        high -= 1
    return high


@dataclass(frozen=True)
class Plan:
    """The planner's answer (``to_dict`` is ``tensorgate plan --json``)."""

    margin: float
    confidence: float
    disagreement: float
    method: str
    min_samples: int
    samples_for_80: int
    samples_for_95: int

    def to_dict(self) -> dict[str, float | int | str]:
        return {
            "minSamples": self.min_samples,
            "samplesFor80": self.samples_for_80,
            "samplesFor95": self.samples_for_95,
            "maxAccuracyDrop": self.margin,
            "confidence": self.confidence,
            "disagreement": self.disagreement,
            "method": self.method,
        }


def plan(margin: float, confidence: float, disagreement: float, *, method: str = METHOD) -> Plan:
    """Minimum samples that can ever promote, and samples for 80 % and 95 % power."""
    return Plan(
        margin=margin,
        confidence=confidence,
        disagreement=disagreement,
        method=method,
        min_samples=minimum_samples(margin, confidence, method=method),
        samples_for_80=samples_for_power(margin, confidence, disagreement, 0.8, method=method),
        samples_for_95=samples_for_power(margin, confidence, disagreement, 0.95, method=method),
    )
