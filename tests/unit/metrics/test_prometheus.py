"""``PrometheusProvider`` without a server: result parsing, retries, error mapping.
(The real server: tests/integration/metrics.)"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException

from tensorgate.api.spec import MetricCheck
from tensorgate.errors import PrometheusError
from tensorgate.metrics.base import Target, Verdict
from tensorgate.metrics.prometheus import PrometheusProvider, QueryRejectedError, parse_result

TARGET = Target("ml", "mnist", "mnist", "canary", 60.0, (), "r1")
CHECK = MetricCheck(name="error-rate", builtin="error-rate", max=0.01)


class Answers:
    """Stands in for ``PrometheusConnect.custom_query``: answers (or raises) in order."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.queries: list[str] = []

    def __call__(self, query: str) -> Any:
        self.queries.append(query)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def provider(answers: Answers, retries: int = 2) -> PrometheusProvider:
    p = PrometheusProvider("http://127.0.0.1:9", retries=retries, backoff_s=0.0, timeout_s=1)
    p._client.custom_query = answers  # type: ignore[method-assign,assignment]
    return p


def vector(*values: str) -> list[dict[str, Any]]:
    return [{"metric": {}, "value": [1.0, v]} for v in values]


def test_parse_result_vector_and_scalar() -> None:
    assert parse_result(vector("0.5", "NaN"))[0] == 0.5
    assert parse_result([1.0, "2"]) == [2.0]
    assert parse_result([]) == []


@pytest.mark.parametrize(
    ("answer", "verdict", "value"),
    [
        (vector("0.02"), Verdict.MEASURED, 0.02),
        ([], Verdict.NO_DATA, None),
        (vector("NaN"), Verdict.NO_DATA, None),
        (vector("1", "2"), Verdict.ERROR, None),
        ([{"metric": {}, "values": [[1.0, "0.1"], [2.0, "0.2"]]}], Verdict.ERROR, None),
    ],
    ids=["value", "no-series-is-no-data", "nan-is-no-data", "two-series-is-error", "matrix"],
)
async def test_measure_verdicts(answer: Any, verdict: Verdict, value: float | None) -> None:
    answers = Answers(answer)
    m = await provider(answers).measure(CHECK, TARGET)
    assert (m.verdict, m.value) == (verdict, value)
    assert 'track="canary"' in answers.queries[0] and "[60s]" in answers.queries[0]


async def test_transport_errors_retried_then_prometheus_error() -> None:
    answers = Answers(*[requests.ConnectionError("refused")] * 3)
    with pytest.raises(PrometheusError, match="after 3 attempt") as info:
        await provider(answers).query("up")
    assert isinstance(info.value.__cause__, requests.ConnectionError)
    assert len(answers.queries) == 3


async def test_5xx_retried_then_succeeds() -> None:
    answers = Answers(PrometheusApiClientException("HTTP Status Code 503 (b'')"), vector("1"))
    assert await provider(answers).query("up") == [1.0]


async def test_bad_query_not_retried_and_is_error_measurement() -> None:
    bad = PrometheusApiClientException("HTTP Status Code 400 (b'bad_data: parse error')")
    answers = Answers(bad)
    with pytest.raises(QueryRejectedError) as info:
        await provider(answers).query("sum(")
    assert info.value.status == 400 and len(answers.queries) == 1
    m = await provider(Answers(bad)).measure(MetricCheck(name="q", query="sum(", max=1), TARGET)
    assert m.verdict == Verdict.ERROR and "HTTP 400" in m.message
