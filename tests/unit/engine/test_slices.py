"""Per-slice tests with Holm's correction: a truly-equal candidate is rolled back by the slice
tests at most ``1 - confidence`` of the time, with 10 slices or 100 (exact), and the code that
decides agrees with the exact number (seeded simulation, stated tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

from tensorgate.engine.slices import (
    SliceCounts,
    false_rollback_probability,
    holm,
    inferiority_p_value,
    slice_tests,
)
from tensorgate.engine.stats import replay_verdict


@pytest.mark.parametrize(
    ("p_values", "expected"),
    [
        pytest.param([0.01, 0.04, 0.03], [True, False, False], id="first-only"),
        pytest.param([0.01, 0.02, 0.04], [True, True, True], id="all-step-down"),
        pytest.param([0.02, 0.3], [True, False], id="second-stops"),
        pytest.param([0.03, 0.03], [False, False], id="none-bonferroni-first"),
        pytest.param([], [], id="empty"),
    ],
)
def test_holm_step_down(p_values: list[float], expected: list[bool]) -> None:
    assert holm(p_values, 0.05) == expected


@pytest.mark.parametrize("slices", [10, 100])
@pytest.mark.parametrize("margin", [0.0, 0.02, 0.05])
def test_equal_candidate_is_rarely_rolled_back_exactly(slices: int, margin: float) -> None:
    """Exact: Holm flags anything iff min p <= alpha / k; slices independent."""
    worst = 0.0
    for size in (30, 50, 200, 1000, 5000):
        for disagreement in (0.01, 0.05, 0.1, 0.3, 0.6):
            worst = max(
                worst,
                false_rollback_probability(
                    [size] * slices, disagreement, margin=margin, confidence=0.95
                ),
            )
    assert worst <= 0.05
    if margin == 0.0:
        assert worst > 0.02  # the strictest margin is close to its level: the grid is not vacuous


def test_unequal_slice_sizes_and_support_are_exact_too() -> None:
    sizes = [5, 12, 40, 80, 200, 600, 1500, 3000, 25, 31]
    prob = false_rollback_probability(sizes, 0.2, margin=0.0, confidence=0.95, min_support=30)
    assert 0.0 < prob <= 0.05


def _simulate(slices: int, size: int, disagreement: float, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    half = disagreement / 2
    rolled = 0
    for _ in range(trials):
        draws = rng.multinomial(size, [half, half, 1 - disagreement], size=slices)
        counts = [SliceCounts(str(i), size, int(b), int(c)) for i, (b, c, _) in enumerate(draws)]
        tests = slice_tests(counts, margin=0.0, confidence=0.95, min_support=1)
        rolled += any(t.flagged for t in tests)
    return rolled / trials


@pytest.mark.parametrize(("slices", "trials"), [(10, 1500), (100, 300)])
def test_slice_tests_agree_with_the_exact_probability(slices: int, trials: int) -> None:
    """Seeded simulation through ``slice_tests``; tolerance 4 binomial standard deviations."""
    exact = false_rollback_probability([1000] * slices, 0.3, margin=0.0, confidence=0.95)
    seen = _simulate(slices, 1000, 0.3, trials, seed=slices)
    tolerance = 4 * np.sqrt(max(exact * (1 - exact), 1e-4) / trials)
    assert abs(seen - exact) <= tolerance, (seen, exact)
    assert seen <= 0.05 + tolerance


def test_a_broken_slice_is_flagged_and_the_others_are_not() -> None:
    counts = [SliceCounts(f"s{i}", 300, 6, 6) for i in range(9)] + [SliceCounts("bad", 300, 90, 3)]
    tests = slice_tests(counts, margin=0.05, confidence=0.95, min_support=30)
    assert [t.slice for t in tests if t.flagged] == ["bad"]
    assert all(t.tested for t in tests)


def test_small_slices_are_reported_not_tested() -> None:
    counts = [SliceCounts("tiny", 10, 9, 0), SliceCounts("big", 500, 5, 5)]
    tests = slice_tests(counts, margin=0.05, confidence=0.95, min_support=30)
    assert [(t.slice, t.tested, t.flagged, t.p_value is None) for t in tests] == [
        ("tiny", False, False, True),
        ("big", True, False, False),
    ]


def test_inferiority_p_value_direction() -> None:
    assert inferiority_p_value(90, 3, 300, 0.05) < 1e-6  # a 29-point drop: it broke
    assert inferiority_p_value(3, 90, 300, 0.05) > 0.999  # the candidate is better


def test_replay_recomputes_the_slice_tests() -> None:
    record = {
        "n": 3000, "b": 60, "c": 57, "confidence": 0.95, "margin": 0.02,
        "method": "tango-score-cc", "sliceMargin": 0.05, "minSliceSupport": 30,
        "slices": [{"slice": f"s{i}", "n": 300, "b": 6, "c": 6} for i in range(9)]
        + [{"slice": "bad", "n": 300, "b": 42, "c": 3}],
    }  # fmt: skip
    assert replay_verdict(record) == "promote"  # reported only
    assert replay_verdict(record | {"decideOnSlices": True}) == "rollback"
    with pytest.raises(ValueError, match="bad slices"):
        replay_verdict(record | {"decideOnSlices": True, "slices": [{"slice": "x"}]})
