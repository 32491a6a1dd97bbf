"""A real Prometheus scraping the real local serving backend (TF Serving's metric names),
read through the built-in error-rate and latency-p99 checks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tensorgate.api.spec import BuiltinMetric, MetricCheck, MetricProvider
from tensorgate.metrics.base import Measurement, Target, Verdict
from tensorgate.metrics.prometheus import PrometheusProvider
from tensorgate.serving.backend import LocalModelServer
from tests.helpers import eventually
from tests.integration.conftest import CANDIDATE, GOOD, ModelRepo
from tests.integration.metrics.conftest import running_prometheus
from tests.models import DIGITS

pytestmark = [pytest.mark.tf, pytest.mark.prometheus]

ERROR_RATE = MetricCheck(
    name="error-rate",
    provider=MetricProvider.PROMETHEUS,
    builtin=BuiltinMetric.ERROR_RATE,
    max=0.01,
)
LATENCY = MetricCheck(
    name="latency-p99",
    provider=MetricProvider.PROMETHEUS,
    builtin=BuiltinMetric.LATENCY_P99,
    max=1000,
)


@pytest.fixture(scope="module")
def tracks(model_repo: ModelRepo) -> Iterator[dict[str, LocalModelServer]]:
    servers = {
        "stable": LocalModelServer(DIGITS.name, model_repo.base, versions=[int(GOOD)]).start(),
        "canary": LocalModelServer(DIGITS.name, model_repo.base, versions=[int(CANDIDATE)]).start(),
    }
    try:
        yield servers
    finally:
        for s in servers.values():
            s.stop()


def target(track: str) -> Target:
    return Target(namespace="ml", name="digits", model_name=DIGITS.name, track=track, interval_s=15)


async def send_traffic(tracks: dict[str, LocalModelServer], rows: np.ndarray, rounds: int) -> None:
    """Bounded user traffic: per round, 8 good requests to each track and 2 requests the
    canary's model rejects (wrong feature count), plus 10 status GETs per track, as an HTTP
    readiness probe or a REST gate would send. Real TF Serving counts those GETs in
    request_count too (tensorflow/serving model_servers/http_server.cc), so the built-in
    error rate must leave them out: 2 of 10 predicts failed is 0.2, not 2 of 20."""
    async with httpx.AsyncClient(timeout=10) as http:
        for i in range(rounds):
            for track, server in tracks.items():
                url = f"{server.rest_url}/v1/models/{DIGITS.name}:predict"
                for row in rows[i * 8 : (i + 1) * 8]:
                    ok = await http.post(url, json={"instances": [row.tolist()]})
                    assert ok.status_code == 200
                for _ in range(10):
                    probe = await http.get(f"{server.rest_url}/v1/models/{DIGITS.name}")
                    assert probe.status_code == 200
                if track == "canary":
                    for _ in range(2):
                        bad = await http.post(url, json={"instances": [[1.0, 2.0]]})
                        assert bad.status_code == 400
            await asyncio.sleep(1.0)  # spread over several 1 s scrapes (a paced load, not a wait)


async def test_prometheus_reads_real_serving_metrics_per_track(
    tracks: dict[str, LocalModelServer], model_repo: ModelRepo
) -> None:
    rows = np.load(model_repo.golden)[DIGITS.input_name]
    labels = {"namespace": "ml", "model": "digits"}
    targets = {f"{s.host}:{s.rest_port}": {**labels, "track": t} for t, s in tracks.items()}
    with running_prometheus(targets) as url:
        provider = PrometheusProvider(url, timeout_s=5, retries=1)
        try:
            await send_traffic(tracks, rows, rounds=6)

            async def measured(check: MetricCheck, track: str) -> Measurement | None:
                m = await provider.measure(check, target(track))
                return m if m.verdict == Verdict.MEASURED else None

            canary_errors = await eventually(
                lambda: measured(ERROR_RATE, "canary"),
                timeout_s=60,
                every_s=1,
                what="canary error rate",
            )
            stable_errors = await eventually(
                lambda: measured(ERROR_RATE, "stable"),
                timeout_s=60,
                every_s=1,
                what="stable error rate",
            )
            latency = await eventually(
                lambda: measured(LATENCY, "canary"), timeout_s=60, every_s=1, what="canary p99"
            )
        finally:
            await provider.close()
    # 2 rejected of 10 canary predicts per round: about 0.2 (0.1 if the GETs counted);
    # stable never fails.
    assert canary_errors.value is not None and 0.15 < canary_errors.value < 0.3
    assert stable_errors.value == 0.0
    assert latency.value is not None and 0 < latency.value < 1000
