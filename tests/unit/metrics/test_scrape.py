"""``ScrapeProvider`` on recorded TF Serving metric pages (httpx.MockTransport)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tensorgate.api.spec import MetricCheck
from tensorgate.errors import ServingError
from tensorgate.metrics.base import Target, Verdict
from tensorgate.metrics.scrape import (
    ScrapeProvider,
    ServingSample,
    histogram_quantile,
    parse_serving_metrics,
)

BOUNDS_US = [10 * 1.8**i for i in range(33)]
ERROR_RATE = MetricCheck(name="error-rate", provider="scrape", builtin="error-rate", max=0.01)
LATENCY = MetricCheck(name="latency-p99", provider="scrape", builtin="latency-p99", max=1000)


def page(ok: int, failed: int, latencies_us: list[float], model: str = "mnist") -> str:
    """TF Serving's text, as the local serving backend renders it."""
    lines = ["# TYPE :tensorflow:serving:request_count counter"]
    lines.append(f':tensorflow:serving:request_count{{model_name="{model}",status="OK"}} {ok}')
    if failed:
        lines.append(
            f':tensorflow:serving:request_count{{model_name="{model}",'
            f'status="INVALID_ARGUMENT"}} {failed}'
        )
    lines.append(':tensorflow:serving:request_count{model_name="other",status="INTERNAL"} 99')
    lines.append("# TYPE :tensorflow:serving:request_latency histogram")
    labels = f'model_name="{model}",API="Predict",entrypoint="REST"'
    for bound in BOUNDS_US:
        n = sum(1 for v in latencies_us if v <= bound)
        lines.append(f':tensorflow:serving:request_latency_bucket{{{labels},le="{bound:g}"}} {n}')
    lines.append(
        f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}} {len(latencies_us)}'
    )
    lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {sum(latencies_us)}")
    lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {len(latencies_us)}")
    return "\n".join(lines) + "\n"


class Pods:
    """Serves a settable metrics page per pod address; counts requests."""

    def __init__(self) -> None:
        self.pages: dict[str, str | int] = {}
        self.requests = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        assert request.url.path == "/monitoring/prometheus/metrics"
        body = self.pages[f"{request.url.host}:{request.url.port}"]
        if isinstance(body, int):
            return httpx.Response(body)
        return httpx.Response(200, text=body)


def target(*endpoints: str, rollout: str = "r1", track: str = "canary") -> Target:
    return Target("ml", "mnist", "mnist", track, 60.0, tuple(endpoints), rollout)


@pytest.fixture
def pods() -> Pods:
    return Pods()


@pytest.fixture
def provider(pods: Pods) -> Callable[..., ScrapeProvider]:
    def make(**kw: Any) -> ScrapeProvider:
        return ScrapeProvider(transport=httpx.MockTransport(pods.handler), backoff_s=0.0, **kw)

    return make


def test_parse_keeps_only_the_model() -> None:
    sample = parse_serving_metrics(page(5, 2, [100.0] * 5), "mnist")
    assert sample.requests == {"OK": 5.0, "INVALID_ARGUMENT": 2.0}
    assert sample.buckets[math.inf] == 5.0


def test_histogram_quantile_matches_promql_interpolation() -> None:
    buckets = {10.0: 0.0, 20.0: 50.0, 40.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(20.0)
    assert histogram_quantile(0.99, buckets) == pytest.approx(20 + 20 * 49 / 50)
    assert histogram_quantile(0.99, {10.0: 0.0, math.inf: 0.0}) is None
    assert histogram_quantile(0.99, {10.0: 1.0, math.inf: 100.0}) == 10.0  # in +Inf bucket


def test_sample_minus_counter_reset_restarts_from_zero() -> None:
    before = ServingSample({"OK": 10.0}, {math.inf: 10.0})
    after = ServingSample({"OK": 3.0}, {math.inf: 3.0})
    assert after.minus(before) == after
    assert ServingSample({"OK": 15.0}, {math.inf: 15.0}).minus(before).requests == {"OK": 5.0}


async def test_scrape_error_rate_is_delta_between_scrapes(
    pods: Pods, provider: Callable[..., ScrapeProvider]
) -> None:
    p = provider()
    pods.pages = {
        "127.0.9.1:8501": page(100, 50, [100.0] * 100),
        "127.0.9.2:8501": page(10, 0, [100.0] * 10),
    }
    t = target("127.0.9.1:8501", "127.0.9.2:8501")
    await p.begin(t)
    pods.pages = {
        "127.0.9.1:8501": page(190, 51, [100.0] * 190),
        "127.0.9.2:8501": page(108, 1, [100.0] * 108),
    }
    m = await p.measure(ERROR_RATE, t)
    assert m.verdict == Verdict.MEASURED
    assert m.value == pytest.approx(2 / 190)  # 188 OK + 2 failed in the window
    # The next window starts where this one ended: no new requests -> no data.
    again = await p.measure(ERROR_RATE, t)
    assert again.verdict == Verdict.NO_DATA and "no requests on 2 canary pod(s)" in again.message
    await p.close()


async def test_scrape_latency_p99_in_ms(
    pods: Pods, provider: Callable[..., ScrapeProvider]
) -> None:
    p = provider()
    pods.pages = {"a:1": page(0, 0, [])}
    t = target("a:1")
    await p.begin(t)
    pods.pages = {"a:1": page(100, 0, [5_000.0] * 98 + [400_000.0] * 2)}
    m = await p.measure(LATENCY, t)
    assert m.verdict == Verdict.MEASURED and m.value is not None
    # p99 falls in the bucket holding 400ms (the upper bound of that bucket is ~5xx ms).
    assert 200.0 < m.value < 700.0
    await p.close()


async def test_scrape_checks_keep_separate_windows(
    pods: Pods, provider: Callable[..., ScrapeProvider]
) -> None:
    p = provider()
    pods.pages = {"a:1": page(0, 0, [])}
    t = target("a:1")
    await p.begin(t)
    pods.pages = {"a:1": page(10, 0, [100.0] * 10)}
    assert (await p.measure(ERROR_RATE, t)).verdict == Verdict.MEASURED
    assert (await p.measure(LATENCY, t)).verdict == Verdict.MEASURED  # not consumed by the first
    await p.close()


async def test_scrape_new_rollout_forgets_old_baseline(
    pods: Pods, provider: Callable[..., ScrapeProvider]
) -> None:
    p = provider()
    pods.pages = {"a:1": page(10, 0, [100.0] * 10)}
    await p.begin(target("a:1", rollout="r1"))
    m = await p.measure(ERROR_RATE, target("a:1", rollout="r2"))
    assert m.value == 0.0  # counted from zero: everything since the pod started
    await p.close()


async def test_scrape_no_pods_is_no_data(provider: Callable[..., ScrapeProvider]) -> None:
    p = provider()
    m = await p.measure(ERROR_RATE, target())
    assert m.verdict == Verdict.NO_DATA and "no ready canary pods" in m.message
    await p.close()


async def test_scrape_query_check_is_error_verdict(provider: Callable[..., ScrapeProvider]) -> None:
    p = provider()
    query = MetricCheck(name="q", query="up", max=1)
    assert (await p.measure(query, target("a:1"))).verdict == Verdict.ERROR
    await p.close()


async def test_scrape_5xx_retried_then_serving_error(
    pods: Pods, provider: Callable[..., ScrapeProvider]
) -> None:
    p = provider(retries=2)
    pods.pages = {"a:1": 503}
    with pytest.raises(ServingError, match="after 3 attempt"):
        await p.measure(ERROR_RATE, target("a:1"))
    assert pods.requests == 3
    await p.close()


async def test_scrape_404_not_retried(pods: Pods, provider: Callable[..., ScrapeProvider]) -> None:
    p = provider(retries=2)
    pods.pages = {"a:1": 404}
    with pytest.raises(ServingError, match="HTTP 404"):
        await p.measure(ERROR_RATE, target("a:1"))
    assert pods.requests == 1
    await p.close()


async def test_scrape_connection_refused_is_serving_error() -> None:
    p = ScrapeProvider(timeout_s=1.0, retries=1, backoff_s=0.0)
    with pytest.raises(ServingError) as info:
        await p.measure(ERROR_RATE, target("127.0.0.1:9"))
    assert isinstance(info.value.__cause__, httpx.TransportError)
    await p.close()


async def test_scrape_error_rate_ignores_status_gets_and_probes(
    pods: Pods, provider: Callable[..., ScrapeProvider]
) -> None:
    """Real TF Serving counts every /v1/... request, GETs and probes too, and times GETs with
    API="" (tensorflow/serving model_servers/http_server.cc): 90 successful probe GETs beside
    10 predicts of which 5 failed is a 5/10 error rate, not 5/100; the p99 is the predicts'."""
    p = provider()
    pods.pages = {"a:1": page(0, 0, [])}
    t = target("a:1")
    await p.begin(t)
    probes = [
        f':tensorflow:serving:request_latency_bucket{{model_name="mnist",API="",'
        f'entrypoint="REST",le="{le}"}} 90'
        for le in ("10", "+Inf")
    ]
    pods.pages = {"a:1": page(95, 5, [100.0] * 5) + "\n".join(probes) + "\n"}
    m = await p.measure(ERROR_RATE, t)
    assert m.value == pytest.approx(0.5)
    p99 = await p.measure(LATENCY, t)
    assert p99.value is not None and p99.value > 0.05  # 100us predicts, not the 10us probes
    await p.close()
