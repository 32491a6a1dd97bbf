from __future__ import annotations

import pytest

from tensorgate.api.spec import BuiltinMetric
from tensorgate.errors import ConfigError
from tensorgate.metrics.templates import builtin_query, promql_range, render


def test_render_fills_every_placeholder() -> None:
    q = render(
        'sum(rate(x{ns="{{namespace}}",m="{{ model }}",t="{{track}}"}[{{interval}}]))',
        model="mnist",
        namespace="ml",
        track="canary",
        interval_s=90,
    )
    assert q == 'sum(rate(x{ns="ml",m="mnist",t="canary"}[90s]))'


def test_render_unknown_placeholder_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\{\{modle\}\}"):
        render("x{m='{{modle}}'}", model="m", namespace="n", track="t", interval_s=1)


def test_render_escapes_quotes_in_values() -> None:
    assert render('{a="{{model}}"}', model='a"b', namespace="", track="", interval_s=1) == (
        '{a="a\\"b"}'
    )


@pytest.mark.parametrize(("seconds", "text"), [(60, "60s"), (0.2, "1s"), (90.4, "90s")])
def test_promql_range_whole_seconds(seconds: float, text: str) -> None:
    assert promql_range(seconds) == text


def test_builtin_queries_select_track_labels() -> None:
    for builtin in BuiltinMetric:
        q = builtin_query(builtin, model="mnist", namespace="ml", track="canary", interval_s=30)
        assert 'namespace="ml",model="mnist",track="canary"' in q
        assert "[30s]" in q and "{{" not in q
    latency = builtin_query(
        BuiltinMetric.LATENCY_P99, model="m", namespace="n", track="t", interval_s=5
    )
    assert latency.startswith("histogram_quantile(0.99,") and latency.endswith("/ 1000")
