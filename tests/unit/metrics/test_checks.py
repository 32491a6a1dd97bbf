"""``run_checks`` (the metric half of Checker.analyse), the factory and the fake."""

from __future__ import annotations

import pytest

from tensorgate.api.spec import MetricCheck
from tensorgate.errors import ConfigError, PrometheusError
from tensorgate.metrics.base import MetricsProvider, Target
from tensorgate.metrics.checks import begin_window, run_checks
from tensorgate.metrics.factory import make_provider, make_providers
from tensorgate.metrics.fake import FakeMetricsProvider
from tensorgate.metrics.prometheus import PrometheusProvider
from tensorgate.metrics.scrape import ScrapeProvider

CANARY = Target("ml", "mnist", "mnist", "canary", 60.0, ("a:1",), "r1")
STABLE = Target("ml", "mnist", "mnist", "stable", 60.0, ("b:1",), "r1")
ERRORS = MetricCheck(name="error-rate", provider="scrape", builtin="error-rate", max=0.01)
LATENCY = MetricCheck(
    name="latency-p99", provider="prometheus", builtin="latency-p99", max_increase_over_stable=50
)


async def test_run_checks_judges_each_check_in_order() -> None:
    scrape = FakeMetricsProvider({"error-rate": 0.5})
    prom = FakeMetricsProvider({("latency-p99", "canary"): 180.0, ("latency-p99", "stable"): 100.0})
    results = await run_checks(
        {"scrape": scrape, "prometheus": prom},
        [ERRORS, LATENCY],
        canary=CANARY,
        stable=STABLE,
        weight=25,
    )
    assert [(r.name, r.passed) for r in results] == [("error-rate", False), ("latency-p99", False)]
    assert results[0].message == "error-rate 0.5 > max 0.01 (canary, 25%)"
    assert "+80 over stable 100 > maxIncreaseOverStable 50" in results[1].message
    assert [(c, t.track) for c, t in prom.calls] == [
        ("latency-p99", "canary"),
        ("latency-p99", "stable"),
    ]
    assert [t.track for _, t in scrape.calls] == ["canary"]  # no comparison: stable not asked


async def test_run_checks_unconfigured_provider_fails_check() -> None:
    (result,) = await run_checks({}, [LATENCY], canary=CANARY, stable=STABLE, weight=10)
    assert not result.passed
    assert "provider prometheus is not configured" in result.message


async def test_run_checks_edge_error_propagates() -> None:
    prom = FakeMetricsProvider({"latency-p99": PrometheusError("down")})
    with pytest.raises(PrometheusError):
        await run_checks({"prometheus": prom}, [LATENCY], canary=CANARY, stable=STABLE, weight=10)


async def test_run_checks_bad_placeholder_fails_check() -> None:
    prom = PrometheusProvider("http://127.0.0.1:9", retries=0)
    # the spec validator refuses it (tests/unit/api); the runtime check is the second line
    valid = MetricCheck(name="custom", query="x{a='{{model}}'}", max=1)
    check = valid.model_copy(update={"query": "x{a='{{nope}}'}"})
    (result,) = await run_checks(
        {"prometheus": prom}, [check], canary=CANARY, stable=STABLE, weight=10
    )
    assert not result.passed and "unknown placeholder(s) {{nope}}" in result.message
    await prom.close()


async def test_begin_window_tells_used_providers() -> None:
    scrape, prom = FakeMetricsProvider(), FakeMetricsProvider()
    await begin_window({"scrape": scrape, "prometheus": prom}, [ERRORS], [CANARY, STABLE])
    assert [t.track for t in scrape.begun] == ["canary", "stable"] and not prom.begun


async def test_factory_builds_known_and_rejects_unknown() -> None:
    scrape = make_provider("scrape")
    assert isinstance(scrape, ScrapeProvider)
    prom = make_provider("prometheus", prometheus_url="http://127.0.0.1:9090")
    assert isinstance(prom, PrometheusProvider)
    with pytest.raises(ConfigError, match="unknown metrics provider 'datadog'"):
        make_provider("datadog")
    with pytest.raises(ConfigError, match="needs a Prometheus URL"):
        make_provider("prometheus")
    assert set(make_providers(prometheus_url=None)) == {"scrape"}
    both = make_providers(prometheus_url="http://127.0.0.1:9090")
    assert set(both) == {"scrape", "prometheus"}
    providers: list[MetricsProvider] = [scrape, prom, *both.values()]
    for p in providers:
        await p.close()
