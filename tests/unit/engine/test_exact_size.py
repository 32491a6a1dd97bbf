"""The gate's exact size: the false-promotion probability, summed over the multinomial
distribution of the discordant counts (not simulated), never exceeds ``1 - confidence``.

A null point is a candidate truly worse by exactly the margin (``p_b - p_c = margin``); the
decision is monotone in ``b`` and ``c``, so a larger true drop only promotes less often. The
nuisance parameter is the discordance: from none on the candidate's side (``p_c = 0``, the
candidate only loses samples, where the uncorrected asymptotic bound runs over) to nearly
every sample. The window's missing mass is added to every cell, so each cell is an upper
bound of the exact size.
"""

from __future__ import annotations

import pytest

from tensorgate.api.spec import MAX_ACCURACY_DROP_LIMIT, MAX_CONFIDENCE
from tensorgate.engine.planner import promotion_probability
from tensorgate.engine.stats import METHOD, promotes

SIZES_N = (20, 30, 50, 75, 100, 133, 149, 222, 300, 500, 1000, 3000, 20_000)
MARGINS = (0.005, 0.01, 0.02, 0.05, 0.1)


def _nuisance(margin: float) -> list[float]:
    """``p_c`` values: none, a quarter / one / four margins, 5 %, 20 % of samples, and every
    sample discordant (``p_b + p_c = 1``, where ``b - c`` moves in steps of two)."""
    levels = [0.0, margin / 4, margin, 4 * margin, 0.05, 0.2]
    return sorted({p for p in levels if 2 * p + margin < 1.0} | {(1.0 - margin) / 2})


def _worst(
    ns: tuple[int, ...] | range,
    margins: tuple[float, ...],
    confidence: float,
    method: str = METHOD,
    nuisance: list[float] | None = None,
) -> tuple[float, int, float, float]:
    worst = (0.0, 0, 0.0, 0.0)
    for margin in margins:
        for p_c in nuisance if nuisance is not None else _nuisance(margin):
            for n in ns:
                prob = promotion_probability(
                    n, p_c + margin, p_c, margin, confidence, method=method
                )
                size = prob.value + prob.missing
                if size > worst[0]:
                    worst = (size, n, margin, p_c)
    return worst


def test_exact_size_is_at_most_one_minus_confidence_on_the_grid() -> None:
    size, n, margin, p_c = _worst(SIZES_N, MARGINS, 0.95)
    assert size <= 0.05, f"false promotion {size:.4f} > 0.05 at n={n}, m={margin}, p_c={p_c}"
    assert size > 0.045  # the grid reaches the method's real worst case; it is not vacuous


def test_exact_size_holds_for_every_small_n_where_the_skew_is_worst() -> None:
    """Every n from 20 to 600, the candidate only losing samples or nearly so."""
    size, n, margin, p_c = _worst(range(20, 601), MARGINS, 0.95, nuisance=[0.0, 0.001])
    assert size <= 0.05, f"false promotion {size:.4f} > 0.05 at n={n}, m={margin}, p_c={p_c}"


@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.9, 0.99, MAX_CONFIDENCE])
def test_exact_size_holds_at_other_confidences(confidence: float) -> None:
    ns = (20, 50, 100, 149, 300, 1000, 5000, 20_000)
    size, n, margin, p_c = _worst(ns, (0.005, 0.02, 0.1, 0.3), confidence)
    limit = 1.0 - confidence
    assert size <= limit, f"false promotion {size:.5f} > {limit} at n={n}, m={margin}, p_c={p_c}"


@pytest.mark.parametrize("margin", [0.2, 0.25, 0.3])
def test_exact_size_holds_up_to_the_largest_margin_the_crd_allows(margin: float) -> None:
    assert margin <= MAX_ACCURACY_DROP_LIMIT
    ns = (20, 35, 50, 134, 200, 275, 720, 1000, 5000, 20_000)
    size, *_ = _worst(ns, (margin,), 0.95)
    assert size <= 0.05
    size, *_ = _worst(ns, (margin,), MAX_CONFIDENCE)
    assert size <= 1.0 - MAX_CONFIDENCE


def test_beyond_the_crd_limits_the_guarantee_is_not_claimed() -> None:
    """Why the CRD stops at maxAccuracyDrop 0.3 and confidence 0.999: with every sample
    discordant the exact size runs over at margin 0.4 (n = 720) and 0.5 (n = 134)."""
    assert promotion_probability(720, 0.7, 0.3, 0.4, 0.999).value > 0.001
    assert promotion_probability(134, 0.75, 0.25, 0.5, 0.999).value > 0.001


def test_uncorrected_tango_bound_runs_over_its_level_with_few_discordant_pairs() -> None:
    """Why the correction: the published issue numbers, 6.8 % at n = 133 and 6.0 % at 300."""
    at_133 = promotion_probability(133, 0.02, 0.0, 0.02, 0.95, method="tango-score").value
    at_300 = promotion_probability(300, 0.02, 0.0, 0.02, 0.95, method="tango-score").value
    assert at_133 == pytest.approx(0.0681, abs=5e-4)
    assert at_300 == pytest.approx(0.060, abs=1e-3)
    assert promotion_probability(133, 0.02, 0.0, 0.02, 0.95).value <= 0.05


def test_promotion_probability_sums_the_whole_distribution() -> None:
    """Every cell promoting gives probability 1 (margin near 1 with n large): the window and the
    pmf are complete."""
    prob = promotion_probability(500, 0.01, 0.01, 0.9, 0.95)
    assert prob.value == pytest.approx(1.0, abs=1e-9)
    assert prob.missing < 1e-9


@pytest.mark.parametrize("n", [25, 149, 300, 2000])
@pytest.mark.parametrize("margin", [0.005, 0.02, 0.1, 0.3])
def test_decision_is_monotone_so_the_boundary_is_the_worst_null(n: int, margin: float) -> None:
    """If (b, c) promotes, so do (b - 1, c) and (b, c + 1): a candidate truly worse than the
    margin promotes less often than one exactly at it, so the boundary cells above bound the
    size over the whole null hypothesis."""
    import numpy as np

    b = np.arange(n + 1)[:, None]
    c = np.arange(n + 1)[None, :]
    region = promotes(b, c, n, margin, 0.95) & (b + c <= n)
    fewer_b = region[1:, :] & ~region[:-1, :]  # (b, c) promotes but (b - 1, c) does not
    more_c = region[:, :-1] & ~region[:, 1:] & ((b + c + 1 <= n)[:, :-1])
    assert not fewer_b.any()
    assert not more_c.any()
