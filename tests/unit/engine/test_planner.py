"""The planner's numbers against the exact power computation they come from."""

from __future__ import annotations

import pytest

from tensorgate.engine.planner import plan, power, promotion_probability, samples_for_power
from tensorgate.engine.stats import minimum_samples, noninferiority


@pytest.mark.parametrize(
    ("margin", "disagreement", "expected"),
    [
        pytest.param(0.02, 0.05, (222, 923, 1511), id="default-0.02-at-5pct"),
        pytest.param(0.05, 0.05, (87, 194, 298), id="0.05-at-5pct"),
        pytest.param(0.02, 0.0, (222, 222, 222), id="no-disagreement-is-the-minimum"),
    ],
)
def test_plan_numbers(margin: float, disagreement: float, expected: tuple[int, int, int]) -> None:
    result = plan(margin, 0.95, disagreement)
    assert (result.min_samples, result.samples_for_80, result.samples_for_95) == expected
    assert result.to_dict()["minSamples"] == expected[0]


@pytest.mark.parametrize(
    ("margin", "disagreement", "target"),
    [(0.02, 0.05, 0.8), (0.02, 0.05, 0.95), (0.01, 0.1, 0.8), (0.1, 0.3, 0.8), (0.05, 0.02, 0.95)],
)
def test_samples_for_power_is_the_first_n_that_reaches_it(
    margin: float, disagreement: float, target: float
) -> None:
    n = samples_for_power(margin, 0.95, disagreement, target)
    assert power(n, margin, 0.95, disagreement) >= target
    assert power(n - 1, margin, 0.95, disagreement) < target


def test_power_at_the_minimum_with_identical_models_is_one() -> None:
    n = minimum_samples(0.02, 0.95)
    assert power(n, 0.02, 0.95, 0.0) == 1.0
    assert power(n - 1, 0.02, 0.95, 0.0) == 0.0


def test_power_is_the_decision_summed_over_the_multinomial() -> None:
    """Cross-check one small case cell by cell against the scalar decision."""
    from math import comb

    n, half, margin = 60, 0.05, 0.1
    total = 0.0
    for b in range(n + 1):
        for c in range(n + 1 - b):
            if noninferiority(b, c, n, margin, 0.95).is_non_inferior:
                total += (
                    comb(n, b) * comb(n - b, c) * half**b * half**c * (1 - 2 * half) ** (n - b - c)
                )
    assert promotion_probability(n, half, half, margin, 0.95).value == pytest.approx(
        total, rel=1e-9
    )


def test_correction_costs_little_power_at_realistic_disagreement() -> None:
    """The price of exact size: about 13 % more samples for 80 % power at margin 0.02."""
    corrected = samples_for_power(0.02, 0.95, 0.05, 0.8)
    asymptotic = samples_for_power(0.02, 0.95, 0.05, 0.8, method="tango-score")
    assert asymptotic == 819
    assert 1.0 < corrected / asymptotic < 1.15


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.02, 0.95, 1.5, 0.8), "disagreement must be in [0, 1]"),
        ((0.02, 0.95, 0.05, 1.0), "target power must be in (0, 1)"),
        ((0.0, 0.95, 0.05, 0.8), "margin must be in (0, 1)"),
    ],
)
def test_samples_for_power_rejects_bad_arguments(
    args: tuple[float, float, float, float], message: str
) -> None:
    import re

    with pytest.raises(ValueError, match=re.escape(message)):
        samples_for_power(*args)
