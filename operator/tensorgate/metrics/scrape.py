"""``ScrapeProvider``: the built-in checks read straight from the serving pods, no Prometheus.

Every pod of a track serves TF Serving's Prometheus text at
``/monitoring/prometheus/metrics``. The counters there are cumulative since the pod started,
so a window's numbers are the DELTA between two scrapes:

- error rate: failed requests (``:tensorflow:serving:request_count{model_name, status}``,
  every status but ``OK``) / (failed + successful predicts), the successful predicts read from
  the latency histogram of the predict APIs (``templates.PREDICT_APIS``), summed over the
  track's pods: TF Serving counts status GETs and probes in ``request_count`` too, and they
  must not dilute the rate (``templates`` explains);
- p99 latency: the ``:tensorflow:serving:request_latency`` histogram (microseconds, successful
  requests only) of the predict APIs, bucket counts summed over pods and entrypoints, then the
  quantile interpolated as PromQL's ``histogram_quantile`` does; reported in milliseconds.

The provider keeps the previous scrape per (namespace, name, track) and per check, for the
current rollout only: a window runs from ``begin`` (or the check's previous measurement) to
now. Without an earlier scrape, or after a counter reset (pod restarted), the baseline is
zero, i.e. everything the pod served since it started.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tensorgate.api.spec import BuiltinMetric, MetricCheck
from tensorgate.errors import ServingError
from tensorgate.metrics.base import Measurement, Target, Verdict
from tensorgate.metrics.templates import LATENCY_BUCKET, OK_STATUS, PREDICT_APIS, REQUEST_COUNT

logger = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
LATENCY_FAMILY = LATENCY_BUCKET.removesuffix("_bucket")
P99 = 0.99
US_PER_MS = 1000.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ServingSample:
    """A pod's cumulative request counters for one model (or a delta of two of them)."""

    requests: Mapping[str, float] = field(default_factory=dict)
    """Requests by status (``OK``, ``INVALID_ARGUMENT``, ...)."""
    buckets: Mapping[float, float] = field(default_factory=dict)
    """Cumulative latency histogram of successful predicts: upper bound in microseconds
    (``inf`` too) -> count."""

    @property
    def total(self) -> float:
        """Failed requests plus successful predicts (not successful GETs or probes)."""
        return self.errors + self.buckets.get(math.inf, 0.0)

    @property
    def errors(self) -> float:
        return sum(v for status, v in self.requests.items() if status != OK_STATUS)

    def minus(self, before: ServingSample | None) -> ServingSample:
        """This sample minus an earlier one; a counter that went down means a restart."""
        if (
            before is None
            or any(v < before.requests.get(k, 0.0) for k, v in self.requests.items())
            or any(v < before.buckets.get(k, 0.0) for k, v in self.buckets.items())
        ):
            return self
        return ServingSample(
            {k: v - before.requests.get(k, 0.0) for k, v in self.requests.items()},
            {k: v - before.buckets.get(k, 0.0) for k, v in self.buckets.items()},
        )

    def plus(self, other: ServingSample) -> ServingSample:
        requests = dict(self.requests)
        for k, v in other.requests.items():
            requests[k] = requests.get(k, 0.0) + v
        buckets = dict(self.buckets)
        for le, count in other.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + count
        return ServingSample(requests, buckets)


def parse_serving_metrics(text: str, model_name: str) -> ServingSample:
    """The request counters of ``model_name`` in a TF Serving metrics page."""
    requests: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == REQUEST_COUNT:
            for s in family.samples:
                if s.labels.get("model_name") == model_name and not s.name.endswith("_created"):
                    status = s.labels.get("status", "")
                    requests[status] = requests.get(status, 0.0) + float(s.value)
        elif family.name == LATENCY_FAMILY:
            for s in family.samples:
                if (
                    s.name.endswith("_bucket")
                    and s.labels.get("model_name") == model_name
                    and s.labels.get("API") in PREDICT_APIS
                ):
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + float(s.value)
    return ServingSample(requests, buckets)


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """PromQL's ``histogram_quantile`` on cumulative buckets; None when there are no counts."""
    ordered = sorted(buckets.items())
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for i, (bound, count) in enumerate(ordered):
        if count >= rank:
            if math.isinf(bound):
                return ordered[i - 1][0] if i > 0 else None
            if i == 0 and bound <= 0:
                return bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return None


@dataclass
class _Window:
    rollout_id: str | None
    start: dict[str, ServingSample] = field(default_factory=dict)
    per_check: dict[str, dict[str, ServingSample]] = field(default_factory=dict)


class ScrapeProvider:
    """Implements ``MetricsProvider`` for the built-in checks by scraping the serving pods."""

    def __init__(
        self,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        backoff_s: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
        max_windows: int = 1024,
    ) -> None:
        self._timeout_s = timeout_s
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._client = httpx.AsyncClient(timeout=timeout_s, transport=transport)
        self._windows: OrderedDict[tuple[str, str, str], _Window] = OrderedDict()
        self._max_windows = max_windows

    async def scrape(self, endpoint: str, model_name: str) -> ServingSample:
        """One pod's counters (``endpoint`` is ``host:port`` or a full base URL)."""
        base = endpoint if "://" in endpoint else f"http://{endpoint}"
        url = base.rstrip("/") + METRICS_PATH
        attempt = 0
        while True:
            try:
                response = await self._client.get(url)
                if response.status_code not in RETRY_STATUSES:
                    response.raise_for_status()
                    return parse_serving_metrics(response.text, model_name)
                error: Exception = ServingError(f"HTTP {response.status_code}")
            except httpx.HTTPStatusError as exc:
                raise ServingError(
                    f"scrape of {url} failed: HTTP {exc.response.status_code}"
                ) from exc
            except httpx.TransportError as exc:
                error = exc
            except ValueError as exc:  # the parser's complaint about the text
                raise ServingError(f"scrape of {url}: unreadable metrics: {exc}") from exc
            attempt += 1
            if attempt > self._retries:
                raise ServingError(
                    f"scrape of {url} failed after {attempt} attempt(s): "
                    f"{type(error).__name__}: {error}"
                ) from error
            await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))

    async def _scrape_all(self, target: Target) -> dict[str, ServingSample]:
        samples = await asyncio.gather(
            *(self.scrape(ep, target.model_name) for ep in target.endpoints)
        )
        return dict(zip(target.endpoints, samples, strict=True))

    def _window(self, target: Target) -> _Window:
        window = self._windows.get(target.key)
        if window is None or window.rollout_id != target.rollout_id:
            window = _Window(target.rollout_id)
            self._windows[target.key] = window
        self._windows.move_to_end(target.key)
        while len(self._windows) > self._max_windows:
            self._windows.popitem(last=False)
        return window

    async def begin(self, target: Target) -> None:
        """Take the baseline scrape of a new window (drops earlier per-check baselines)."""
        samples = await self._scrape_all(target)
        window = self._window(target)
        window.start = samples
        window.per_check.clear()

    async def measure(self, check: MetricCheck, target: Target) -> Measurement:
        started = datetime.now(UTC)
        if check.builtin is None:
            return Measurement(
                None,
                Verdict.ERROR,
                started,
                datetime.now(UTC),
                "provider scrape measures builtin checks only; a query needs prometheus",
            )
        if not target.endpoints:
            return Measurement(
                None,
                Verdict.NO_DATA,
                started,
                datetime.now(UTC),
                f"no ready {target.track} pods to scrape",
            )
        samples = await self._scrape_all(target)
        window = self._window(target)
        base = window.per_check.get(check.name, window.start)
        delta = ServingSample()
        for endpoint, sample in samples.items():
            delta = delta.plus(sample.minus(base.get(endpoint)))
        window.per_check[check.name] = samples
        finished = datetime.now(UTC)
        pods = f"{len(samples)} {target.track} pod(s)"
        if check.builtin == BuiltinMetric.ERROR_RATE:
            if delta.total <= 0:
                return Measurement(
                    None, Verdict.NO_DATA, started, finished, f"no requests on {pods} in the window"
                )
            return Measurement(
                delta.errors / delta.total,
                Verdict.MEASURED,
                started,
                finished,
                f"{delta.errors:g} of {delta.total:g} requests failed on {pods}",
            )
        p99_us = histogram_quantile(P99, delta.buckets)
        if p99_us is None:
            return Measurement(
                None,
                Verdict.NO_DATA,
                started,
                finished,
                f"no successful requests on {pods} in the window",
            )
        return Measurement(
            p99_us / US_PER_MS,
            Verdict.MEASURED,
            started,
            finished,
            f"p99 over {delta.buckets.get(math.inf, 0.0):g} requests on {pods}",
        )

    async def close(self) -> None:
        await self._client.aclose()
