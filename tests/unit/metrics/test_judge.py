"""``engine.analysis.judge``: measurements + limits -> CheckResult (a table of cases)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tensorgate.api.spec import MetricCheck
from tensorgate.engine.analysis import Measurement, Verdict, judge

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def m(value: float | None, verdict: Verdict = Verdict.MEASURED, message: str = "") -> Measurement:
    if value is None and verdict == Verdict.MEASURED:
        verdict = Verdict.NO_DATA
    return Measurement(value, verdict, T0, T0, message)


def check(**limits: Any) -> MetricCheck:
    return MetricCheck(name="error-rate", builtin="error-rate", **limits)


CASES = [
    (
        "below-max-passes",
        check(max=0.01),
        m(0.002),
        None,
        50,
        True,
        "error-rate 0.002 <= max 0.01 (canary, 50%)",
    ),
    (
        "above-max-fails",
        check(max=0.01),
        m(0.031),
        None,
        50,
        False,
        "error-rate 0.031 > max 0.01 (canary, 50%)",
    ),
    (
        "below-min-fails",
        check(min=0.5),
        m(0.25),
        None,
        10,
        False,
        "error-rate 0.25 < min 0.5 (canary, 10%)",
    ),
    (
        "no-data-fails",
        check(max=0.01),
        m(None, message="no requests on 1 canary pod(s)"),
        None,
        25,
        False,
        "error-rate no data (canary, 25%): no requests on 1 canary pod(s)",
    ),
    (
        "query-error-fails",
        check(max=0.01),
        m(None, Verdict.ERROR, "bad_data"),
        None,
        25,
        False,
        "error-rate query failed (canary, 25%): bad_data",
    ),
    (
        "increase-over-stable-fails",
        check(max_increase_over_stable=0.01),
        m(0.05),
        m(0.01),
        50,
        False,
        "error-rate 0.05 is +0.04 over stable 0.01 > maxIncreaseOverStable 0.01 (canary, 50%)",
    ),
    (
        "increase-within-limit-passes",
        check(max=0.1, max_increase_over_stable=0.01),
        m(0.015),
        m(0.01),
        50,
        True,
        "error-rate 0.015 <= max 0.1 (+0.005 vs stable 0.01 <= "
        "maxIncreaseOverStable 0.01) (canary, 50%)",
    ),
    (
        "stable-no-data-fails-below-100",
        check(max_increase_over_stable=0.01),
        m(0.01),
        m(None),
        50,
        False,
        "error-rate no stable data to compare (canary, 50%)",
    ),
    (
        "stable-no-data-at-100-skips-comparison",
        check(max_increase_over_stable=0.01),
        m(0.01),
        m(None),
        100,
        True,
        "error-rate 0.01 (no stable traffic at 100%: comparison skipped) (canary, 100%)",
    ),
    (
        "stable-error-fails",
        check(max_increase_over_stable=0.01),
        m(0.01),
        m(None, Verdict.ERROR, "down"),
        50,
        False,
        "error-rate stable query failed (canary, 50%): down",
    ),
    (
        "infinite-latency-fails-json-safe",
        check(max=1000.0),
        m(float("inf")),
        None,
        50,
        False,
        "error-rate inf > max 1000 (canary, 50%)",
    ),
]


@pytest.mark.parametrize(
    ("metric", "canary", "stable", "weight", "passed", "message"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_judge_table(
    metric: MetricCheck,
    canary: Measurement,
    stable: Measurement | None,
    weight: int,
    passed: bool,
    message: str,
) -> None:
    result = judge(metric, canary, stable, weight=weight)
    assert (result.passed, result.message) == (passed, message)
    assert result.name == "error-rate"
    if result.value is not None:
        assert result.value == canary.value


def test_judge_no_data_is_never_a_pass() -> None:
    for verdict in (Verdict.NO_DATA, Verdict.ERROR):
        assert not judge(check(min=0.0), m(None, verdict), weight=10).passed
