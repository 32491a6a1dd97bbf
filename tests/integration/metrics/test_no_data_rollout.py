"""Prometheus returning no data during a canary step (issue 12, item 4): never a promotion.

A rollout goes through the real ``Reconciler`` and engine with the step's metric checks run by
``metrics.checks.run_checks`` (what ``checks.PlatformChecker.analyse`` does) over a real
``PrometheusProvider``; smoke and the golden-set comparison pass (scripted). What the
provider's queries get back:

- an empty vector (a metric that does not exist), an empty matrix, a NaN sample (``0/0``, a
  rate over no requests) and a NaN scalar: ``Verdict.NO_DATA``, the check fails ("no data"),
  which counts against ``analysis.failureLimit``;
- a non-empty matrix (a range selector without an aggregation): a failed check naming the
  mistake. Before, ``parse_result`` raised a bare ``PrometheusError`` ("unexpected sample"),
  an edge error retried at every step until ``maxEdgeErrors``.

For each: the canary is rolled back with the reason in ``status.message`` and one Event, the
stable version stays, the phase never reaches Promoting, and the operator waits an analysis
interval between two checks (no hot loop). The fast cases answer from a stub in place of the
HTTP client; the ``prometheus``-marked ones ask the real Prometheus (Debian's, started by
``tests/integration/metrics/conftest.py``) for metrics that do not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tensorgate.api.spec import ModelDeploymentSpec, parse_spec
from tensorgate.api.status import CheckResult
from tensorgate.metrics.base import MetricsProvider, Target
from tensorgate.metrics.checks import run_checks
from tensorgate.metrics.prometheus import PrometheusProvider
from tensorgate.platform.base import Body
from tensorgate.platform.fake import FakePlatform, FakeRouter
from tensorgate.reconcile import Reconciler
from tests.integration.metrics.conftest import Cluster
from tests.unit.test_reconcile import ScriptedChecker, StepClock

INTERVAL_S = 30


class PrometheusChecker(ScriptedChecker):
    """Smoke and comparison pass; a step's metric checks go to the real provider."""

    def __init__(self, provider: MetricsProvider) -> None:
        super().__init__()
        self.provider = provider

    async def analyse(
        self, body: Body, spec: ModelDeploymentSpec, weight: int
    ) -> list[CheckResult]:
        self.calls.append(f"analyse@{weight}")
        canary, stable = (
            Target.of(body, spec, track, [f"127.0.0.1:{port}"])
            for track, port in (("canary", 9501), ("stable", 8501))
        )
        return await run_checks(
            {"prometheus": self.provider},
            spec.analysis.metrics,
            canary=canary,
            stable=stable,
            weight=weight,
        )


def md_body(version: str, query: str, status: dict[str, Any]) -> dict[str, Any]:
    spec = parse_spec(
        {
            "model": {"name": "mnist", "version": version, "uri": "gs://models/mnist"},
            "serving": {"replicas": 4},
            "contract": {
                "inputs": {"x": {"dtype": "float32", "shape": [-1, 4]}},
                "outputs": {"p": {"dtype": "float32", "shape": [-1, 3]}},
            },
            "analysis": {
                "steps": [25, 50, 100],
                "interval": f"{INTERVAL_S}s",
                "failureLimit": 2,
                "maxEdgeErrors": 2,
                "metrics": [{"name": "errors", "query": query, "max": 0.05}],
            },
        }
    )
    meta = {"name": "mnist", "namespace": "ml", "generation": int(version)}
    return {"metadata": meta, "spec": spec.to_dict(), "status": status}


async def roll_out(provider: MetricsProvider, query: str) -> dict[str, Any]:
    """v1 (no canary, no steps), then v2 through its steps until the rollout ends."""
    clock = StepClock()
    checker = PrometheusChecker(provider)
    r = Reconciler(FakePlatform(), {"replicas": FakeRouter()}, checker, clock)
    status: dict[str, Any] = {}
    phases: list[str] = []
    events: list[str] = []
    waits: list[float | None] = []
    for version in ("1", "2"):
        for _ in range(80):
            outcome = await r.reconcile(md_body(version, query, status))
            status = outcome.status
            if version == "2":
                phases.append(str(status.get("phase")))
                events += [f"{e.reason}: {e.message}" for e in outcome.events]
                if status.get("phase") == "Progressing":
                    waits.append(outcome.requeue_s)
            done = status.get("phase") in {"Promoted", "RolledBack", "Failed"}
            if done and status.get("observedGeneration") == int(version):
                break
            clock.advance(outcome.requeue_s or 1)
        else:
            raise AssertionError(f"v{version} never ended: {status.get('message')}")
    analyses = [c for c in checker.calls if c.startswith("analyse")]
    return {
        "status": status,
        "phases": phases,
        "events": events,
        "waits": waits,
        "analyses": analyses,
    }


def assert_rolled_back(run: dict[str, Any], reason: str) -> None:
    status = run["status"]
    assert status["phase"] == "RolledBack", (run["phases"], status.get("message"))
    assert "Promoting" not in run["phases"] and "Promoted" not in run["phases"], run["phases"]
    assert status["stableVersion"] == "1"
    assert reason in (status.get("message") or ""), status.get("message")
    rolled = [e for e in run["events"] if "rolled back 2 to 1" in e]
    assert len(rolled) == 1 and reason in rolled[0], run["events"]
    # failureLimit 2: two failed checks, one analysis interval apart (no hot loop)
    assert len(run["analyses"]) == 2, run["analyses"]
    assert any(w is not None and w >= INTERVAL_S / 2 for w in run["waits"]), run["waits"]


class Always:
    """Stands in for ``PrometheusConnect.custom_query``: the same ``data.result`` every time."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.queries: list[str] = []

    def __call__(self, query: str) -> Any:
        self.queries.append(query)
        return self.result


QUERY = 'sum(rate(x{model="{{model}}",track="{{track}}"}[{{interval}}]))'
NOW = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
FAKE_CASES = {
    "empty-vector": ([], "errors no data (canary, 25%)"),
    "nan-sample": ([{"metric": {}, "value": [NOW, "NaN"]}], "errors no data (canary, 25%)"),
    "nan-scalar": ([NOW, "NaN"], "errors no data (canary, 25%)"),
    "matrix": (
        [{"metric": {}, "values": [[NOW, "0.01"], [NOW + 15, "0.02"]]}],
        "query returned a range vector",
    ),
}


@pytest.mark.parametrize(("result", "reason"), FAKE_CASES.values(), ids=list(FAKE_CASES))
async def test_no_data_in_a_step_rolls_back_never_promotes(result: Any, reason: str) -> None:
    provider = PrometheusProvider("http://127.0.0.1:9", retries=1, backoff_s=0.0, timeout_s=1)
    answers = Always(result)
    provider._client.custom_query = answers  # type: ignore[method-assign,assignment]
    try:
        run = await roll_out(provider, QUERY)
    finally:
        await provider.close()
    assert_rolled_back(run, reason)
    assert len(answers.queries) == 2 and 'track="canary"' in answers.queries[0]


REAL_CASES = {
    "no-such-metric": (
        'sum(rate(tensorgate_no_such_metric_total{model="{{model}}",track="{{track}}"}'
        "[{{interval}}]))",
        "errors no data (canary, 25%)",
    ),
    "empty-matrix": (
        'tensorgate_no_such_metric_total{model="{{model}}",track="{{track}}"}[{{interval}}]',
        "errors no data (canary, 25%)",
    ),
    "nan": (
        'sum(rate(tensorgate_no_such_metric_total{track="{{track}}"}[{{interval}}]))'
        " or vector(0) / vector(0)",
        "errors no data (canary, 25%)",
    ),
}


@pytest.mark.prometheus
@pytest.mark.parametrize(("query", "reason"), REAL_CASES.values(), ids=list(REAL_CASES))
async def test_real_prometheus_without_data_rolls_back(
    prometheus: Cluster, query: str, reason: str
) -> None:
    provider = PrometheusProvider(prometheus.url, timeout_s=5, retries=1, backoff_s=0.1)
    try:
        run = await roll_out(provider, query)
    finally:
        await provider.close()
    assert_rolled_back(run, reason)
