"""Metric analysis verdicts: measurements + a check's limits -> a CheckResult. Pure.

A metric provider (``tensorgate.metrics``) turns a check into a :class:`Measurement` per
track; :func:`judge` compares the canary's measurement with the check's ``min``/``max`` and,
for ``maxIncreaseOverStable``, with the stable track's measurement of the same metric.

No data is a failed check, never a pass: a canary that served no requests in the window has
not shown that it is healthy. A query that failed is a failed check too, with its own
message, so "no traffic" and "query failed" stay distinguishable in status and Events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from tensorgate.api.spec import MetricCheck
from tensorgate.api.status import CheckResult

FULL_WEIGHT = 100


class Verdict(StrEnum):
    """What a measurement is: a value, no data (no traffic), or a failed query."""

    MEASURED = "Measured"
    NO_DATA = "NoData"
    ERROR = "Error"


@dataclass(frozen=True)
class Measurement:
    """One observation of one metric on one track."""

    value: float | None
    verdict: Verdict
    started_at: datetime
    finished_at: datetime
    message: str = ""

    @property
    def has_value(self) -> bool:
        return self.verdict == Verdict.MEASURED and self.value is not None


def format_number(value: float) -> str:
    """Four significant digits, no exponent for everyday magnitudes: 0.031, 182.4, 1e-05."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def format_signed(value: float) -> str:
    """Like :func:`format_number`, always with a sign: +0.02, -3.1."""
    text = format_number(value)
    return text if text.startswith("-") else f"+{text}"


def _where(track: str, weight: int) -> str:
    return f"({track}, {weight}%)"


def _json_safe(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def judge(
    check: MetricCheck,
    canary: Measurement,
    stable: Measurement | None = None,
    *,
    weight: int,
) -> CheckResult:
    """The verdict of ``check`` at canary ``weight`` percent.

    ``stable`` is needed only when the check sets ``maxIncreaseOverStable``; at weight 100 the
    stable track may rightly have no traffic, and then the comparison is skipped (said so in
    the message) while ``min``/``max`` still apply.
    """
    name = check.name
    where = _where("canary", weight)
    if canary.verdict == Verdict.ERROR:
        return CheckResult(
            name=name, passed=False, message=f"{name} query failed {where}: {canary.message}"
        )
    if not canary.has_value:
        detail = f": {canary.message}" if canary.message else ""
        return CheckResult(name=name, passed=False, message=f"{name} no data {where}{detail}")
    value = canary.value
    assert value is not None
    shown = format_number(value)
    safe = _json_safe(value)

    if math.isnan(value):
        return CheckResult(name=name, passed=False, message=f"{name} is nan {where}")
    if check.max is not None and value > check.max:
        return CheckResult(
            name=name,
            passed=False,
            value=safe,
            message=f"{name} {shown} > max {format_number(check.max)} {where}",
        )
    if check.min is not None and value < check.min:
        return CheckResult(
            name=name,
            passed=False,
            value=safe,
            message=f"{name} {shown} < min {format_number(check.min)} {where}",
        )

    parts = [f"{name} {shown}"]
    if check.max is not None:
        parts.append(f"<= max {format_number(check.max)}")
    if check.min is not None:
        parts.append(f">= min {format_number(check.min)}")

    limit = check.max_increase_over_stable
    if limit is not None:
        verdict = _compare(name, value, limit, stable, weight)
        if verdict is not None and not verdict[0]:
            return CheckResult(name=name, passed=False, value=safe, message=verdict[1])
        if verdict is not None:
            parts.append(verdict[1])
    return CheckResult(name=name, passed=True, value=safe, message=f"{' '.join(parts)} {where}")


def _compare(
    name: str, value: float, limit: float, stable: Measurement | None, weight: int
) -> tuple[bool, str] | None:
    """(passed, text) of the canary-vs-stable comparison; None when it does not apply."""
    where = _where("canary", weight)
    if stable is None or stable.verdict == Verdict.ERROR:
        why = stable.message if stable is not None else "not measured"
        return False, f"{name} stable query failed {where}: {why}"
    if not stable.has_value or stable.value is None or math.isnan(stable.value):
        if weight >= FULL_WEIGHT:
            return True, "(no stable traffic at 100%: comparison skipped)"
        detail = f": {stable.message}" if stable.message else ""
        return False, f"{name} no stable data to compare {where}{detail}"
    increase = value - stable.value
    text = (
        f"{name} {format_number(value)} is {format_signed(increase)} over stable "
        f"{format_number(stable.value)}"
    )
    if increase > limit:
        return False, f"{text} > maxIncreaseOverStable {format_number(limit)} {where}"
    return True, (
        f"({format_signed(increase)} vs stable {format_number(stable.value)} "
        f"<= maxIncreaseOverStable {format_number(limit)})"
    )


def needs_stable(check: MetricCheck) -> bool:
    """Whether ``check`` compares the canary with the stable track."""
    return check.max_increase_over_stable is not None
