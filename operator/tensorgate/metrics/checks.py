"""Run a step's metric checks: measure every check on the canary (and on stable where a
check compares the two), then judge them with ``engine.analysis.judge``.

This is the metric half of ``reconcile.Checker.analyse``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from tensorgate.api.spec import MetricCheck
from tensorgate.api.status import CheckResult
from tensorgate.engine.analysis import judge, needs_stable
from tensorgate.errors import ConfigError
from tensorgate.metrics.base import Measurement, MetricsProvider, Target, Verdict


async def _measure(
    providers: Mapping[str, MetricsProvider], check: MetricCheck, target: Target
) -> Measurement:
    provider = providers.get(str(check.provider))
    if provider is None:
        now = datetime.now(UTC)
        return Measurement(
            None, Verdict.ERROR, now, now, f"metrics provider {check.provider} is not configured"
        )
    try:
        return await provider.measure(check, target)
    except ConfigError as exc:  # e.g. an unknown placeholder in the query
        now = datetime.now(UTC)
        return Measurement(None, Verdict.ERROR, now, now, str(exc))


async def run_checks(
    providers: Mapping[str, MetricsProvider],
    checks: Sequence[MetricCheck],
    *,
    canary: Target,
    stable: Target,
    weight: int,
) -> list[CheckResult]:
    """One CheckResult per check, in order. Edge failures (``EdgeError``) propagate."""

    async def one(check: MetricCheck) -> CheckResult:
        if needs_stable(check):
            c, s = await asyncio.gather(
                _measure(providers, check, canary), _measure(providers, check, stable)
            )
            return judge(check, c, s, weight=weight)
        return judge(check, await _measure(providers, check, canary), weight=weight)

    return list(await asyncio.gather(*(one(c) for c in checks)))


async def begin_window(
    providers: Mapping[str, MetricsProvider],
    checks: Sequence[MetricCheck],
    targets: Sequence[Target],
) -> None:
    """Tell every provider the checks use that a step's window starts now."""
    used = {str(c.provider) for c in checks}
    await asyncio.gather(
        *(providers[name].begin(t) for name in sorted(used) if name in providers for t in targets)
    )
