"""Statistics of the accuracy gate against published values.

Reference values: Fagerland, Lydersen & Laake, *Statistical Analysis of Contingency Tables*
(2017), chapter 8, Cavo et al. (2012) paired table [[59, 6], [16, 80]] as computed by the
book's R package ``contingencytables``; Agresti, *Categorical Data Analysis*, presidential
approval ratings (n = 1600, discordant 150 / 86).
"""

from __future__ import annotations

import itertools
import math

import pytest

from tensorgate.engine.stats import (
    METHOD,
    continuity_correction,
    mcnemar_exact_p,
    mcnemar_midp,
    mcnemar_z,
    minimum_samples,
    noninferiority,
    normal_cdf,
    normal_ppf,
    promotes,
    replay_verdict,
    score_statistic,
    tango_interval,
    tango_statistic,
    tango_upper_bound,
    wald_interval,
)


@pytest.mark.parametrize(
    ("p", "z"),
    [
        (0.5, 0.0),
        (0.975, 1.959963984540054),
        (0.95, 1.6448536269514722),
        (0.99, 2.3263478740408408),
        (0.999, 3.090232306167813),
        (0.01, -2.3263478740408408),
        (1e-10, -6.361340902404056),
        (0.02, -2.053748910631823),
    ],
    ids=lambda v: str(v),
)
def test_normal_ppf_matches_known_quantiles(p: float, z: float) -> None:
    assert normal_ppf(p) == pytest.approx(z, abs=1e-12)
    assert normal_cdf(normal_ppf(p)) == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize(
    ("b", "c", "n", "confidence", "lower", "upper"),
    [
        pytest.param(6, 16, 161, 0.95, -0.1240, -0.0054, id="cavo-2012"),
        pytest.param(3, 0, 3, 0.95, -0.1230, 1.0, id="all-discordant-one-way"),
        pytest.param(0, 3, 3, 0.95, -1.0, 0.1230, id="all-discordant-other-way"),
    ],
)
def test_tango_interval_matches_published_values(
    b: int, c: int, n: int, confidence: float, lower: float, upper: float
) -> None:
    lo, hi = tango_interval(b, c, n, confidence)
    assert lo == pytest.approx(lower, abs=5e-5)
    assert hi == pytest.approx(upper, abs=5e-5)


def test_wald_interval_matches_published_values() -> None:
    assert wald_interval(6, 16, 161) == pytest.approx((-0.1184, -0.0058), abs=5e-5)
    assert wald_interval(150, 86, 1600) == pytest.approx((0.0213, 0.0587), abs=5e-5)


@pytest.mark.parametrize(
    ("b", "c", "continuity", "z", "p"),
    [
        pytest.param(6, 16, False, -2.132, 0.033006, id="cavo-asymptotic"),
        pytest.param(6, 16, True, 1.919, 0.055009, id="cavo-continuity"),
        pytest.param(150, 86, False, 4.166, None, id="agresti-approval"),
    ],
)
def test_mcnemar_z_matches_published_values(
    b: int, c: int, continuity: bool, z: float, p: float | None
) -> None:
    value = mcnemar_z(b, c, continuity=continuity)
    assert value == pytest.approx(z, abs=5e-4)
    if p is not None:
        assert 2 * normal_cdf(-abs(value)) == pytest.approx(p, abs=5e-7)


def test_mcnemar_exact_and_midp_match_published_values() -> None:
    assert mcnemar_exact_p(6, 16) == pytest.approx(0.052479, abs=5e-7)
    assert mcnemar_midp(6, 16) == pytest.approx(0.034690, abs=5e-7)
    assert mcnemar_exact_p(0, 0) == 1.0


@pytest.mark.parametrize(
    ("b", "c", "n", "margin", "promote"),
    [
        pytest.param(0, 0, 3000, 0.02, True, id="identical-models-promote"),
        pytest.param(0, 0, 3000, 0.0, False, id="zero-margin-never-proven"),
        pytest.param(30, 20, 3000, 0.02, True, id="slightly-worse-within-margin-promotes"),
        pytest.param(20, 30, 3000, 0.02, True, id="slightly-better-promotes"),
        pytest.param(60, 0, 3000, 0.02, False, id="drop-at-margin-rolls-back"),
        pytest.param(2473, 21, 3000, 0.02, False, id="collapse-94-to-13-rolls-back"),
        pytest.param(3, 0, 50, 0.02, False, id="small-sample-too-uncertain-rolls-back"),
        pytest.param(0, 0, 50, 0.02, False, id="tiny-identical-set-cannot-prove-it"),
        pytest.param(0, 0, 1000, 0.02, True, id="identical-1000-proves-it"),
    ],
)
def test_noninferiority_decides(b: int, c: int, n: int, margin: float, promote: bool) -> None:
    result = noninferiority(b, c, n, margin, 0.95)
    assert result.is_non_inferior is promote
    assert result.drop == pytest.approx((b - c) / n)
    assert result.upper_bound >= result.drop
    # Test and bound agree (duality), away from the exact boundary.
    if abs(result.upper_bound - margin) > 1e-9:
        assert (result.p_value <= 0.05) is promote


def test_tango_upper_bound_with_no_discordance_is_wilson_like() -> None:
    z = normal_ppf(0.95)
    assert tango_upper_bound(0, 0, 3000, 0.95) == pytest.approx(z * z / (3000 + z * z), rel=1e-6)


def test_tango_statistic_is_decreasing_and_zero_at_estimate() -> None:
    values = [tango_statistic(40, 20, 160, d / 100) for d in range(-50, 90, 5)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert tango_statistic(40, 20, 160, 20 / 160) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 5, 8), "b + c <= n"),
        ((-1, 0, 8), "0 <= b"),
        ((0, 0, 0), "n > 0"),
    ],
)
def test_stats_reject_impossible_tables(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=re_escape(message)):
        tango_upper_bound(*args)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_upper_bound_coverage_is_close_to_nominal() -> None:
    """Seeded simulation: the 95% bound covers the true drop in about 95% of tables."""
    import numpy as np

    rng = np.random.default_rng(0)
    n, p_b, p_c = 400, 0.04, 0.02
    true_drop = p_b - p_c
    covered = 0
    trials = 1500
    for counts in rng.multinomial(n, [p_b, p_c, 1 - p_b - p_c], size=trials):
        covered += tango_upper_bound(int(counts[0]), int(counts[1]), n, 0.95) >= true_drop
    assert 0.93 <= covered / trials <= 0.975


def test_normal_ppf_edges() -> None:
    assert normal_ppf(0.0) == -math.inf
    assert normal_ppf(1.0) == math.inf
    with pytest.raises(ValueError):
        normal_ppf(1.5)


def _tables(seed: int, count: int) -> list[tuple[int, int, int]]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(1, 5000))
        b = int(rng.integers(0, n + 1))
        c = int(rng.integers(0, n - b + 1))
        out.append((b, c, n))
    return out


@pytest.mark.parametrize("method", ["tango-score-cc", "tango-score"])
def test_bound_p_value_and_decision_agree_on_random_tables(method: str) -> None:
    """promote iff U <= m iff p <= alpha, and the vectorised decision is the scalar one."""
    import numpy as np

    tables = _tables(1, 400) + [(b, c, 300) for b in range(0, 12) for c in range(0, 4)]
    for margin in (0.0, 0.005, 0.02, 0.1, 0.5):
        for b, c, n in tables:
            result = noninferiority(b, c, n, margin, 0.95, method=method)
            assert result.method == method
            vector = promotes(np.array([b]), np.array([c]), n, margin, 0.95, method=method)
            assert bool(vector[0]) is result.is_non_inferior
            if abs(result.upper_bound - margin) > 1e-9:
                assert (result.upper_bound <= margin) is result.is_non_inferior, (b, c, n, margin)
            if abs(result.p_value - 0.05) > 1e-9:
                assert (result.p_value <= 0.05) is result.is_non_inferior, (b, c, n, margin)


def test_corrected_statistic_is_decreasing_in_the_hypothesis() -> None:
    """Bisection for U needs T(delta0) decreasing from (b - c + cc) / n (where T = 0) to 1."""
    for b, c, n in [(0, 0, 300), (5, 0, 300), (0, 5, 300), (40, 20, 160), (150, 148, 300)]:
        cc = continuity_correction(b, c, n)
        start = (b - c + cc) / n
        grid = [start + (1 - start) * k / 400 for k in range(400)]
        values = [score_statistic(b, c, n, d, continuity=cc) for d in grid]
        assert all(x > y for x, y in itertools.pairwise(values)), (b, c, n)


def test_correction_is_one_count_growing_to_two_with_discordance() -> None:
    assert continuity_correction(0, 0, 100) == 1.0
    assert continuity_correction(30, 20, 100) == 1.5
    assert continuity_correction(60, 40, 100) == 2.0
    assert continuity_correction(60, 40, 100, method="tango-score") == 0.0


@pytest.mark.parametrize(
    ("margin", "method", "expected"),
    [
        pytest.param(0.02, "tango-score", 133, id="asymptotic-z2-(1-m)/m"),
        pytest.param(0.02, METHOD, 222, id="corrected-0.02"),
        pytest.param(0.05, METHOD, 87, id="corrected-0.05"),
        pytest.param(0.005, METHOD, 894, id="corrected-0.005"),
    ],
)
def test_minimum_samples_is_where_identical_models_start_to_promote(
    margin: float, method: str, expected: int
) -> None:
    n = minimum_samples(margin, 0.95, method=method)
    assert n == expected
    assert noninferiority(0, 0, n, margin, 0.95, method=method).is_non_inferior
    assert not noninferiority(0, 0, n - 1, margin, 0.95, method=method).is_non_inferior


def test_exact_method_needs_at_least_the_binomial_minimum() -> None:
    """Any test with exact size needs (1 - m)^n <= alpha at b = c = 0: n >= 149 at 0.02."""
    assert 0.98**149 <= 0.05 < 0.98**148
    assert minimum_samples(0.02, 0.95) >= 149


def _record(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "n": 3000,
        "b": 30,
        "c": 20,
        "confidence": 0.95,
        "margin": 0.02,
        "method": METHOD,
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({}, "promote", id="within-margin-promotes"),
        pytest.param({"b": 90, "c": 0}, "rollback", id="drop-beyond-margin-rolls-back"),
        pytest.param({"checksPassed": False}, "rollback", id="failed-check-rolls-back"),
        pytest.param(
            {"n": 133, "b": 0, "c": 0, "method": "tango-score"}, "promote", id="old-method-replays"
        ),
        pytest.param({"n": 133, "b": 0, "c": 0}, "rollback", id="corrected-method-needs-222"),
    ],
)
def test_replay_verdict_recomputes_the_decision(changes: dict[str, object], expected: str) -> None:
    assert replay_verdict(_record(**changes)) == expected


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param({"n": 10}, "lacks b, c, confidence, margin, method", id="missing-keys"),
        pytest.param(_record(method="wald"), "unknown method 'wald'", id="unknown-method"),
        pytest.param(_record(b="x"), "not a number", id="not-a-number"),
        pytest.param(_record(b=3000, c=1), "b + c <= n", id="impossible-table"),
    ],
)
def test_replay_verdict_rejects_bad_records(record: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re_escape(message)):
        replay_verdict(record)
