"""``FakeMetricsProvider``: programmed measurements, and a log of what was asked."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from tensorgate.api.spec import MetricCheck
from tensorgate.errors import EdgeError
from tensorgate.metrics.base import Measurement, Target, Verdict

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

Programmed = float | Measurement | EdgeError | None


class FakeMetricsProvider:
    """Answers ``measure`` from ``values[(check name, track)]`` (or ``values[check name]``).

    A float is a measured value, ``None`` is no data, a Measurement is returned as is and an
    ``EdgeError`` is raised (an unreachable backend). Unprogrammed checks have no data.
    """

    def __init__(self, values: Mapping[tuple[str, str] | str, Programmed] | None = None) -> None:
        self.values: dict[tuple[str, str] | str, Programmed] = dict(values or {})
        self.calls: list[tuple[str, Target]] = []
        self.begun: list[Target] = []
        self.closed = False

    def set(self, check: str, value: Programmed, track: str | None = None) -> None:
        self.values[(check, track) if track else check] = value

    async def measure(self, check: MetricCheck, target: Target) -> Measurement:
        self.calls.append((check.name, target))
        key = (check.name, target.track)
        value = self.values[key] if key in self.values else self.values.get(check.name)
        if isinstance(value, EdgeError):
            raise value
        if isinstance(value, Measurement):
            return value
        if value is None:
            return Measurement(None, Verdict.NO_DATA, _EPOCH, _EPOCH, "no data (fake)")
        return Measurement(float(value), Verdict.MEASURED, _EPOCH, _EPOCH)

    async def begin(self, target: Target) -> None:
        self.begun.append(target)

    async def close(self) -> None:
        self.closed = True
