"""Statistics for the canary accuracy gate: pure functions, no I/O.

The gate compares two classifiers on the *same* labelled samples, so the two accuracies are
paired proportions. Every sample falls into one cell of a 2x2 table::

                         candidate right   candidate wrong
        stable right           a                 b
        stable wrong           c                 d

Only the discordant cells carry information about the difference. With ``n = a + b + c + d``
the observed accuracy drop is ``drop = p_stable - p_candidate = (b - c) / n``.

The gate is a **non-inferiority** test with margin ``m`` (``maxAccuracyDrop``)::

    H0: drop >= m    (the candidate is worse by the margin or more)   -> roll back
    H1: drop <  m    (the candidate is non-inferior)                  -> promote

It is decided by the one-sided upper confidence bound ``U`` of the drop at level
``confidence`` (one-sided: ``confidence = 0.95`` means at most 5 % of candidates that are
truly worse by the margin get promoted): promote iff ``U <= m``. ``U`` is the largest
``delta0`` that the score test of ``H0: drop = delta0`` does not reject at one-sided level
``alpha = 1 - confidence``. The statistic is Tango's score statistic (Tango 1998, Stat Med
17:891-908) with a continuity correction ``cc`` on ``b - c`` (method ``tango-score-cc``)::

    T(delta0) = (b - c + cc - n * delta0) / sqrt(n * (2 * q + delta0 * (1 - delta0)))

where ``q`` is the maximum-likelihood estimate of the "stable wrong, candidate right" cell
probability under the constraint ``drop = delta0`` (a closed-form root of a quadratic) and
``cc = 1 + (b + c) / n``: one count, the step of ``b - c`` when a sample moves between a
concordant and a discordant cell (the correction Edwards' McNemar test applies to the same
difference), growing to two, the step of ``b - c`` when every sample is discordant. Because
``U`` inverts the same test whose p-value is reported, the two can never disagree:
``U <= m  <=>  T(m) <= -z  <=>  p = Phi(T(m)) <= alpha``.

Why the correction. Without it (``cc = 0``, method ``tango-score``, kept for reference and
for verdicts recorded before) the asymptotic bound runs over its nominal level when few
samples are discordant: when the candidate only loses samples and truly drops by exactly the
margin, the exact false-promotion probability is 6.8 % at n = 133 (margin 0.02, confidence
0.95). With the correction, the exact false-promotion probability, summed over the
multinomial distribution of ``(b, c)`` at a true drop equal to the margin (the worst point of
the null hypothesis: the decision is monotone in ``b`` and ``c``), stays at or below
``1 - confidence`` on the whole grid that ``tests/unit/engine/test_exact_size.py`` computes
(n from 20 to 20,000, margins 0.005 to 0.3, discordance from none to every sample,
confidence 0.5 to 0.999). That is the range the CRD allows (``maxAccuracyDrop <= 0.3``,
``confidence <= 0.999``): beyond it, with every sample discordant, the exact size runs over
(0.1007 % at margin 0.4, confidence 0.999, n = 720). Why it keeps holding beyond the grid:
the skewness error of the normal approximation and the correction's slack both shrink like
``1 / sqrt(n * discordance)``, so their ratio does not depend on n. In the tightest case,
every sample discordant (``b - c`` then moves in steps of two and the correction of two is
one step), the slack is half a step against a skew term of ``m (z^2 - 1) / 6`` steps: it wins
while ``m (z^2 - 1) < 3``, which holds for every allowed pair (at most 0.3 * 8.55 = 2.56 at
margin 0.3, confidence 0.999) and fails at margin 0.4 with confidence 0.999, as computed. A fixed ``cc = 0.5`` does not suffice (exact size up to 21.1 % at
confidence 0.8, 0.114 % at 0.999), nor does a fixed ``cc = 1`` when every sample is
discordant (5.1 % at margin 0.9, 0.1002 % at confidence 0.999). The price is power: two
identical models need ``minimum_samples`` (222 at margin 0.02) instead of 133;
``tensorgate.engine.planner`` computes the exact sample sizes.

Why a score bound and not the textbook Wald interval ``drop +/- z * se``: the Wald standard
error is estimated at the observed table, so with few discordant pairs it is too small (with
``b = c = 0`` it is zero and the bound equals the estimate, claiming certainty from nothing).
The score bound evaluates the variance under the hypothesis being tested and is the interval
recommended by comparison studies of paired-difference intervals (Newcombe 1998; Tang, Tang &
Chan 2003; Fagerland, Lydersen & Laake 2014/2017). The Wald bound, McNemar's test and the
uncorrected Tango bound are provided for reference and for the tests
(``tests/unit/engine/test_stats.py`` checks them against published values).

``replay_verdict`` recomputes a recorded decision from the numbers it was taken from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CONTINUITY",
    "METHOD",
    "METHODS",
    "NonInferiority",
    "continuity_correction",
    "mcnemar_exact_p",
    "mcnemar_midp",
    "mcnemar_z",
    "minimum_samples",
    "noninferiority",
    "normal_cdf",
    "normal_ppf",
    "promotes",
    "replay_verdict",
    "score_statistic",
    "score_statistics",
    "score_upper_bound",
    "tango_interval",
    "tango_statistic",
    "tango_upper_bound",
    "verify_verdict",
    "wald_interval",
]

METHOD = "tango-score-cc"
CONTINUITY = 1.0
METHODS: Mapping[str, float] = {"tango-score-cc": CONTINUITY, "tango-score": 0.0}
"""Decision methods by name and the base continuity correction each adds to ``b - c``."""


def _continuity(method: str) -> float:
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r} (known: {', '.join(METHODS)})") from None


def continuity_correction(b: int, c: int, n: int, *, method: str = METHOD) -> float:
    """What ``method`` adds to ``b - c``: ``cc * (1 + (b + c) / n)``.

    One count while few samples are discordant (the step of ``b - c`` when one sample moves
    between a concordant and a discordant cell), growing to two as every sample becomes
    discordant (then ``b - c`` moves in steps of two).
    """
    return _continuity(method) * (1.0 + (b + c) / n)


# Acklam's rational approximation of the inverse normal CDF (relative error < 1.15e-9),
# refined by one Halley step against erfc to full double precision.
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (
    7.784695709041462e-03,
    3.224671290700398e-01,
    2.445134137142996e00,
    3.754408661907416e00,
)
_P_LOW = 0.02425


def normal_cdf(x: float) -> float:
    """Standard normal CDF, accurate in both tails (via erfc)."""
    if math.isinf(x):
        return 0.0 if x < 0 else 1.0
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def normal_ppf(p: float) -> float:
    """Inverse of the standard normal CDF (the quantile function) for 0 < p < 1."""
    if not 0.0 < p < 1.0:
        if p == 0.0:
            return -math.inf
        if p == 1.0:
            return math.inf
        raise ValueError(f"normal_ppf: p must be in [0, 1] (got {p})")
    if p < _P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    elif p <= 1.0 - _P_LOW:
        q = p - 0.5
        r = q * q
        x = (
            (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5])
            * q
            / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
        )
    else:
        q = math.sqrt(-2.0 * math.log(1.0 - p))
        x = -(((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    # One Halley step: e = Phi(x) - p; u = e * sqrt(2 pi) * exp(x^2 / 2).
    e = normal_cdf(x) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


def _check_table(b: int, c: int, n: int) -> None:
    if b < 0 or c < 0 or n <= 0 or b + c > n:
        raise ValueError(f"need 0 <= b, 0 <= c, b + c <= n, n > 0 (got b={b}, c={c}, n={n})")


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")


def mcnemar_z(b: int, c: int, *, continuity: bool = False) -> float:
    """McNemar's statistic as a signed z score, ``(b - c) / sqrt(b + c)``.

    With ``continuity`` the absolute value ``(|b - c| - 1) / sqrt(b + c)`` is returned (Edwards'
    correction). Zero discordant pairs give 0.
    """
    if b + c == 0:
        return 0.0
    if continuity:
        return max(abs(b - c) - 1, 0) / math.sqrt(b + c)
    return (b - c) / math.sqrt(b + c)


def _binom_pmf_half(k: int, m: int) -> float:
    return math.exp(
        math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1) - m * math.log(2.0)
    )


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact conditional McNemar p-value (binomial test of b out of b + c at 1/2)."""
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(_binom_pmf_half(k, m) for k in range(min(b, c) + 1))
    return min(1.0, 2.0 * tail)


def mcnemar_midp(b: int, c: int) -> float:
    """Two-sided mid-p McNemar p-value: the exact p-value minus the observed point's mass."""
    m = b + c
    if m == 0:
        return 1.0
    return max(0.0, mcnemar_exact_p(b, c) - _binom_pmf_half(min(b, c), m))


def wald_interval(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wald interval of ``(b - c) / n`` for paired proportions (reference only)."""
    _check_table(b, c, n)
    _check_confidence(confidence)
    z = normal_ppf(1.0 - (1.0 - confidence) / 2.0)
    estimate = (b - c) / n
    se = math.sqrt(max((b + c) - (b - c) ** 2 / n, 0.0)) / n
    return max(-1.0, estimate - z * se), min(1.0, estimate + z * se)


def _restricted_q(b: int, c: int, n: int, delta0: float) -> float:
    """ML estimate of the c-cell probability under ``(p_b - p_c) = delta0`` (Tango 1998)."""
    w = -(b + c) + (2 * n - b + c) * delta0
    disc = w * w + 8.0 * n * c * delta0 * (1.0 - delta0)
    return max(0.0, (-w + math.sqrt(max(disc, 0.0))) / (4.0 * n))


def score_statistic(b: int, c: int, n: int, delta0: float, *, continuity: float = 0.0) -> float:
    """Tango's score statistic for ``H0: (b - c) / n = delta0`` with ``continuity`` added to
    ``b - c`` (``-inf``/``+inf`` at zero variance; see ``continuity_correction``)."""
    _check_table(b, c, n)
    numerator = b - c + continuity - n * delta0
    variance = n * (2.0 * _restricted_q(b, c, n, delta0) + delta0 * (1.0 - delta0))
    if variance <= 1e-300:
        if abs(numerator) <= 1e-12 * n:
            return 0.0
        return math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def tango_statistic(b: int, c: int, n: int, delta0: float) -> float:
    """Tango's (uncorrected) score statistic for ``H0: (b - c) / n = delta0``."""
    return score_statistic(b, c, n, delta0, continuity=0.0)


def score_statistics(
    b: npt.ArrayLike,
    c: npt.ArrayLike,
    n: int,
    delta0: float,
    *,
    method: str = METHOD,
    direction: float = 1.0,
) -> npt.NDArray[np.float64]:
    """``score_statistic`` for many tables at once, with ``method``'s correction added to
    ``b - c`` (``direction = 1``: against promoting) or taken from it (``-1``: against
    flagging a drop above ``delta0``, the slice test)."""
    base = _continuity(method) * direction
    bb = np.asarray(b, dtype=np.float64)
    cc = np.asarray(c, dtype=np.float64)
    m = float(delta0)
    w = -(bb + cc) + (2 * n - bb + cc) * m
    disc = np.maximum(w * w + 8.0 * n * cc * m * (1.0 - m), 0.0)
    q = np.maximum(0.0, (-w + np.sqrt(disc)) / (4.0 * n))
    variance = n * (2.0 * q + m * (1.0 - m))
    numerator = bb - cc + base * (1.0 + (bb + cc) / n) - n * m
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(
            variance > 1e-300,
            numerator / np.sqrt(np.maximum(variance, 1e-300)),
            np.where(np.abs(numerator) <= 1e-12 * n, 0.0, np.sign(numerator) * np.inf),
        )
    return np.asarray(stat, dtype=np.float64)


def promotes(
    b: npt.ArrayLike,
    c: npt.ArrayLike,
    n: int,
    margin: float,
    confidence: float,
    *,
    method: str = METHOD,
) -> npt.NDArray[np.bool_]:
    """The gate's decision for many tables at once (vectorised ``noninferiority``).

    ``True`` where ``T(margin) <= -z``; cells with ``b + c > n`` are ``False``. This is the
    function the exact size and power computations sum over.
    """
    _check_confidence(confidence)
    bb = np.asarray(b, dtype=np.float64)
    cc = np.asarray(c, dtype=np.float64)
    stat = score_statistics(bb, cc, n, margin, method=method)
    z = normal_ppf(confidence)
    return np.asarray((stat <= -z) & (bb + cc <= n) & (bb >= 0) & (cc >= 0), dtype=np.bool_)


def _solve(
    b: int, c: int, n: int, target: float, lo: float, hi: float, continuity: float = 0.0
) -> float:
    """The delta0 in [lo, hi] where the decreasing T(delta0) crosses ``target``."""
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if score_statistic(b, c, n, mid, continuity=continuity) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def score_upper_bound(
    b: int, c: int, n: int, confidence: float = 0.95, *, continuity: float = 0.0
) -> float:
    """One-sided upper confidence bound of ``(b - c) / n`` at ``confidence`` (score test with
    ``continuity`` on ``b - c``): the ``delta0`` where ``T(delta0) = -z``."""
    _check_table(b, c, n)
    _check_confidence(confidence)
    start = (b - c + continuity) / n  # T(start) = 0 > -z
    if start >= 1.0:
        return 1.0
    z = normal_ppf(confidence)
    return _solve(b, c, n, -z, max(start, -1.0), 1.0, continuity)


def tango_upper_bound(b: int, c: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of ``(b - c) / n`` at ``confidence`` (Tango score)."""
    return score_upper_bound(b, c, n, confidence, continuity=0.0)


def tango_interval(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Tango score interval of ``(b - c) / n`` at ``confidence``."""
    _check_table(b, c, n)
    _check_confidence(confidence)
    estimate = (b - c) / n
    z = normal_ppf(1.0 - (1.0 - confidence) / 2.0)
    lower = -1.0 if estimate <= -1.0 else _solve(b, c, n, z, -1.0, estimate)
    upper = 1.0 if estimate >= 1.0 else _solve(b, c, n, -z, estimate, 1.0)
    return lower, upper


def minimum_samples(margin: float, confidence: float, *, method: str = METHOD) -> int:
    """The smallest golden set on which two identical models (``b = c = 0``) promote.

    With ``b = c = 0`` the restricted ``q`` is 0, so ``T(m) = (cc - n m) / sqrt(n m (1 - m))``
    and the condition ``T(m) <= -z`` is a quadratic in ``sqrt(n)``; the closed form is then
    checked against the decision itself (floating point at the boundary).
    """
    continuity = _continuity(method)
    _check_confidence(confidence)
    if not 0.0 < margin < 1.0:
        raise ValueError(f"margin must be in (0, 1) to ever promote (got {margin})")
    z = normal_ppf(confidence)
    k = z * math.sqrt(margin * (1.0 - margin))
    root = (k + math.sqrt(k * k + 4.0 * margin * continuity)) / (2.0 * margin)
    n = max(1, math.ceil(root * root))
    while n > 1 and bool(promotes(0, 0, n - 1, margin, confidence, method=method)):
        n -= 1
    while not bool(promotes(0, 0, n, margin, confidence, method=method)):
        n += 1
    return n


@dataclass(frozen=True)
class NonInferiority:
    """The outcome of the paired non-inferiority test of an accuracy drop.

    ``drop`` is the observed ``(b - c) / n``, ``upper_bound`` the one-sided bound at
    ``confidence``, ``p_value`` the p-value of ``H0: drop >= margin``; ``is_non_inferior`` is
    ``upper_bound <= margin``.
    """

    b: int
    c: int
    n: int
    margin: float
    confidence: float
    drop: float
    upper_bound: float
    p_value: float
    is_non_inferior: bool
    method: str = METHOD


def noninferiority(
    b: int, c: int, n: int, margin: float, confidence: float, *, method: str = METHOD
) -> NonInferiority:
    """Test ``H0: drop >= margin`` against ``H1: drop < margin`` with the score statistic of
    ``method`` (``tango-score-cc`` by default, ``tango-score`` for the uncorrected one).

    ``b``: samples the stable model got right and the candidate wrong; ``c``: the reverse;
    ``n``: all paired samples. The decision is ``T(margin) <= -z``, which is ``p <= alpha``
    and ``upper_bound <= margin``.
    """
    _check_table(b, c, n)
    _check_confidence(confidence)
    continuity = continuity_correction(b, c, n, method=method)
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"margin must be in [0, 1) (got {margin})")
    upper = score_upper_bound(b, c, n, confidence, continuity=continuity)
    statistic = score_statistic(b, c, n, margin, continuity=continuity)
    decided = bool(promotes(b, c, n, margin, confidence, method=method))
    return NonInferiority(
        b=b,
        c=c,
        n=n,
        margin=margin,
        confidence=confidence,
        drop=(b - c) / n,
        upper_bound=upper,
        p_value=normal_cdf(statistic),
        is_non_inferior=decided,
        method=method,
    )


REPLAY_KEYS = ("n", "b", "c", "confidence", "margin", "method")


def replay_verdict(inputs: Mapping[str, Any]) -> str:
    """Recompute a recorded gate verdict: ``"promote"`` or ``"rollback"``.

    ``inputs`` is what the gate stored (``GateStatus.verdict``, the gate JSON's ``verdict``);
    keys:

    - ``n`` (int): paired golden-set samples scored;
    - ``b`` (int): samples only the stable model classified correctly;
    - ``c`` (int): samples only the candidate classified correctly;
    - ``confidence`` (float): one-sided confidence of the bound, in [0.5, 1);
    - ``margin`` (float): ``maxAccuracyDrop``, in [0, 1);
    - ``method`` (str): ``tango-score-cc`` (current) or ``tango-score`` (before the correction);
    - ``checksPassed`` (bool, optional, default true): whether every other canary check
      (finite outputs, the ``minAccuracy`` floor; not the slice and agreement checks, which
      are recomputed) passed; a failed check is a rollback whatever the numbers say;
    - ``slices`` (list, optional): per-slice tables ``{"slice": str, "n": int, "b": int,
      "c": int}``, with ``sliceMargin`` (float, default ``margin``), ``minSliceSupport``
      (int, default 1) and ``decideOnSlices`` (bool, default false) beside them; when
      ``decideOnSlices`` is true the slice tests (``tensorgate.engine.slices.slice_tests``,
      Holm at ``confidence``) are recomputed and any flagged slice is a rollback;
    - ``unlabeledSamples``, ``unlabeledAgreed`` (int, optional) and ``minAgreement`` (float,
      optional): with all three, the exact lower bound of the agreement rate at
      ``confidence`` (``tensorgate.engine.agreement``) must reach ``minAgreement``.

    Raises ``ValueError`` naming the key when one is missing or impossible.
    """
    missing = [k for k in REPLAY_KEYS if k not in inputs]
    if missing:
        raise ValueError(f"verdict record lacks {', '.join(missing)}")
    try:
        n, b, c = int(inputs["n"]), int(inputs["b"]), int(inputs["c"])
        confidence, margin = float(inputs["confidence"]), float(inputs["margin"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"verdict record: a number is not a number ({exc})") from exc
    method = str(inputs["method"])
    result = noninferiority(b, c, n, margin, confidence, method=method)
    passed = result.is_non_inferior and bool(inputs.get("checksPassed", True))
    if passed and inputs.get("decideOnSlices") and inputs.get("slices"):
        from tensorgate.engine.slices import SliceCounts, slice_tests

        try:
            counts = [
                SliceCounts(str(s["slice"]), int(s["n"]), int(s["b"]), int(s["c"]))
                for s in inputs["slices"]
            ]
            slice_margin = inputs.get("sliceMargin")
            tests = slice_tests(
                counts,
                margin=margin if slice_margin is None else float(slice_margin),
                confidence=confidence,
                min_support=int(inputs.get("minSliceSupport") or 1),
                method=method,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"verdict record: bad slices ({exc})") from exc
        passed = not any(t.flagged for t in tests)
    minimum = inputs.get("minAgreement")
    if passed and minimum is not None and inputs.get("unlabeledSamples"):
        from tensorgate.engine.agreement import agreement_lower_bound

        try:
            agreed, total = int(inputs["unlabeledAgreed"]), int(inputs["unlabeledSamples"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"verdict record: bad unlabeled agreement ({exc})") from exc
        passed = agreement_lower_bound(agreed, total, confidence) >= float(minimum)
    return "promote" if passed else "rollback"


def verify_verdict(record: Mapping[str, Any]) -> bool:
    """Whether ``record["decision"]`` is what ``replay_verdict(record)`` recomputes.

    ``record`` holds the keys ``replay_verdict`` documents plus ``decision`` (``"promote"``
    or ``"rollback"``); a missing ``decision`` raises ``ValueError``.
    """
    if "decision" not in record:
        raise ValueError("verdict record lacks decision")
    return replay_verdict(record) == str(record["decision"])
