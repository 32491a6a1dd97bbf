"""``PrometheusProvider`` against a real Prometheus server scraping stub TF Serving pods."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tensorgate.api.spec import MetricCheck
from tensorgate.errors import PrometheusError
from tensorgate.metrics.base import Measurement, Target, Verdict
from tensorgate.metrics.checks import run_checks
from tensorgate.metrics.prometheus import PrometheusProvider, QueryRejectedError
from tests.helpers import eventually
from tests.integration.metrics.conftest import Cluster

pytestmark = pytest.mark.prometheus

ERROR_RATE = MetricCheck(name="error-rate", builtin="error-rate", max=0.01)
LATENCY = MetricCheck(
    name="latency-p99", builtin="latency-p99", max=1000, max_increase_over_stable=20
)
WINDOW_S = 10.0
DATA_TIMEOUT_S = 45.0


def target(track: str) -> Target:
    return Target("ml", "mnist", "mnist", track, WINDOW_S, (), "r1")


async def measured(provider: PrometheusProvider, check: MetricCheck, track: str) -> Measurement:
    """Poll until Prometheus holds enough samples for a rate over the window."""

    async def probe() -> Measurement | None:
        m = await provider.measure(check, target(track))
        return m if m.verdict == Verdict.MEASURED else None

    return await eventually(
        probe, timeout_s=DATA_TIMEOUT_S, every_s=0.5, what=f"{check.name} data for {track}"
    )


@pytest.fixture
async def provider(prometheus: Cluster) -> AsyncIterator[PrometheusProvider]:
    p = PrometheusProvider(prometheus.url, timeout_s=5, retries=2, backoff_s=0.1)
    yield p
    await p.close()


async def test_builtin_error_rate_of_each_track(provider: PrometheusProvider) -> None:
    canary = await measured(provider, ERROR_RATE, "canary")
    assert canary.value == pytest.approx(5 / 105, abs=1e-3)
    stable = await measured(provider, ERROR_RATE, "stable")
    assert stable.value == 0.0  # no failed series at all: "or vector(0)", not no data


async def test_builtin_latency_p99_in_ms(provider: PrometheusProvider) -> None:
    canary = await measured(provider, LATENCY, "canary")
    assert canary.value is not None and 37.4 < canary.value <= 67.5  # 50ms lies in (37.5, 67.5]
    stable = await measured(provider, LATENCY, "stable")
    assert stable.value is not None and stable.value < 7.0


async def test_no_traffic_and_no_series_are_no_data(provider: PrometheusProvider) -> None:
    await measured(provider, ERROR_RATE, "canary")  # Prometheus has data by now
    idle = await provider.measure(ERROR_RATE, target("idle"))  # scraped, zero requests
    assert idle.verdict == Verdict.NO_DATA and idle.value is None
    missing = await provider.measure(LATENCY, target("nowhere"))  # no such series
    assert missing.verdict == Verdict.NO_DATA


async def test_user_query_template(provider: PrometheusProvider) -> None:
    check = MetricCheck(
        name="requests-per-second",
        query='sum(rate({__name__=":tensorflow:serving:request_count",'
        'namespace="{{namespace}}",model="{{model}}",track="{{track}}"}[{{interval}}]))',
        min=1,
    )
    m = await measured(provider, check, "canary")
    assert m.value is not None and m.value > 1


async def test_run_checks_compares_canary_with_stable(provider: PrometheusProvider) -> None:
    await measured(provider, LATENCY, "stable")
    results = await run_checks(
        {"prometheus": provider},
        [ERROR_RATE, LATENCY],
        canary=target("canary"),
        stable=target("stable"),
        weight=50,
    )
    assert [(r.name, r.passed) for r in results] == [("error-rate", False), ("latency-p99", False)]
    assert results[0].message.startswith("error-rate 0.04") and "> max 0.01 (canary, 50%)" in (
        results[0].message
    )
    assert "> maxIncreaseOverStable 20 (canary, 50%)" in results[1].message


async def test_bad_query_is_prometheus_error(provider: PrometheusProvider) -> None:
    with pytest.raises(PrometheusError) as info:
        await provider.query("sum(rate(")
    assert isinstance(info.value, QueryRejectedError) and info.value.status == 400
    m = await provider.measure(MetricCheck(name="broken", query="sum(", max=1), target("canary"))
    assert m.verdict == Verdict.ERROR and "HTTP 400" in m.message


async def test_unreachable_prometheus_is_prometheus_error() -> None:
    from tests.integration.metrics.conftest import free_port

    p = PrometheusProvider(
        f"http://127.0.0.1:{free_port()}", timeout_s=1, retries=1, backoff_s=0.05
    )
    with pytest.raises(PrometheusError, match="after 2 attempt"):
        await p.measure(ERROR_RATE, target("canary"))
    await p.close()
