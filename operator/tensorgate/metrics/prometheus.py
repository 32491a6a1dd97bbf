"""``PrometheusProvider``: metric checks as PromQL instant queries (prometheus-api-client).

The client is synchronous (requests); every call runs in a worker thread with a per-request
timeout, and is retried a bounded number of times on transport errors and 5xx/429 answers.
A query Prometheus rejects (HTTP 400/422: bad PromQL) is not retried: ``query`` raises
``PrometheusError`` and ``measure`` returns a ``Verdict.ERROR`` measurement.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from tensorgate.api.spec import MetricCheck
from tensorgate.errors import PrometheusError
from tensorgate.metrics.base import Measurement, Target, Verdict
from tensorgate.metrics.templates import builtin_query, render

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_STATUS = re.compile(r"HTTP Status Code (\d{3})")


class QueryRejectedError(PrometheusError):
    """Prometheus refused the query itself (bad PromQL): retrying cannot help."""

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


def _status_of(exc: PrometheusApiClientException) -> int | None:
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).replace("\\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_result(result: Any) -> list[float]:
    """Values of an instant query's ``data.result`` (vector, or scalar ``[ts, "v"]``)."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return [float(result[1])]
    values: list[float] = []
    for sample in result or []:
        value = sample.get("value") if isinstance(sample, dict) else None
        if not isinstance(value, list) or len(value) != 2:
            raise PrometheusError(f"unexpected sample in query result: {sample!r}"[:300])
        values.append(float(value[1]))
    return values


class PrometheusProvider:
    """Implements ``MetricsProvider`` against a Prometheus server's HTTP API."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        # Retries are ours (bounded, async backoff); the library's urllib3 retry is off.
        self._client = PrometheusConnect(
            url=self.url,
            headers=headers or {},
            retry=Retry(total=0, raise_on_status=False),
            timeout=timeout_s,  # type: ignore[arg-type]  # the library annotates int
        )

    async def query(self, promql: str) -> list[float]:
        """Run an instant query; one float per returned series (empty: no data)."""
        attempt = 0
        while True:
            try:
                result = await asyncio.wait_for(
                    asyncio.to_thread(self._client.custom_query, promql),
                    timeout=self._timeout_s + 1.0,
                )
                return parse_result(result)
            except PrometheusApiClientException as exc:
                status = _status_of(exc)
                if status is not None and status not in RETRY_STATUSES:
                    raise QueryRejectedError(
                        f"prometheus rejected query (HTTP {status}): {_short(exc)}", status
                    ) from exc
                error: Exception = exc
            except (requests.RequestException, TimeoutError, ValueError) as exc:
                error = exc
            attempt += 1
            if attempt > self._retries:
                raise PrometheusError(
                    f"prometheus query failed after {attempt} attempt(s) at {self.url}: "
                    f"{_short(error)}"
                ) from error
            logger.debug("prometheus query failed (attempt %s), retrying: %s", attempt, error)
            await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))

    def promql(self, check: MetricCheck, target: Target) -> str:
        """The PromQL a check runs for a target."""
        if check.builtin is not None:
            return builtin_query(
                check.builtin,
                model=target.name,
                namespace=target.namespace,
                track=target.track,
                interval_s=target.interval_s,
            )
        assert check.query is not None
        return render(
            check.query,
            model=target.name,
            namespace=target.namespace,
            track=target.track,
            interval_s=target.interval_s,
        )

    async def measure(self, check: MetricCheck, target: Target) -> Measurement:
        started = datetime.now(UTC)
        promql = self.promql(check, target)
        try:
            values = await self.query(promql)
        except QueryRejectedError as exc:
            return Measurement(None, Verdict.ERROR, started, datetime.now(UTC), str(exc))
        finished = datetime.now(UTC)
        if not values:
            return Measurement(
                None,
                Verdict.NO_DATA,
                started,
                finished,
                f"no series for track {target.track} in the last {target.interval_s:g}s",
            )
        if len(values) > 1:
            return Measurement(
                None,
                Verdict.ERROR,
                started,
                finished,
                f"query returned {len(values)} series; expected one (aggregate it, e.g. sum)",
            )
        value = values[0]
        if math.isnan(value):
            return Measurement(
                None,
                Verdict.NO_DATA,
                started,
                finished,
                f"no requests on track {target.track} in the last {target.interval_s:g}s (nan)",
            )
        return Measurement(value, Verdict.MEASURED, started, finished)

    async def begin(self, target: Target) -> None:
        """Nothing to do: Prometheus keeps the history, the window is the query's range."""

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
