"""The operator's Grafana dashboard: built with grafana-foundation-sdk, valid for the dashboard
schema, querying only metrics the operator exports, shipped by the chart in a ConfigMap the
Grafana sidecar imports (``grafana_dashboard: "1"``), off by default.

Every PromQL expression is parsed with a real PromQL parser (promql-parser, the Rust parser of
GreptimeDB) and each selector's metric and label names are checked against the registry of
tensorgate/observability.py.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

import pytest
import yaml

from tests.helpers import require
from tests.unit.chart.test_chart import CHART, FULLNAME, NAMESPACE, RELEASE

GRAFANA_VARIABLES = re.compile(
    r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}"
)
LABEL_VALUES = re.compile(
    r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$"
)


def _module(name: str, what: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - require() fails under CI=true
        require(False, what, "pip install -c constraints.txt -e '.[dev]'")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    _module("grafana_foundation_sdk", "grafana-foundation-sdk")
    from tests.unit.chart.grafana_dashboard import DASHBOARD_JSON

    shipped: dict[str, Any] = json.loads(DASHBOARD_JSON.read_text())
    return shipped


def exported() -> dict[str, set[str]]:
    """Sample name -> label names, for every series the operator's registry can export."""
    from tensorgate.api.reasons import Phase
    from tensorgate.observability import OperatorMetrics

    metrics = OperatorMetrics()
    metrics.rollout_phase.set("x", "x", Phase.PENDING)  # a collector of its own, no children
    for collector in vars(metrics).values():
        names = getattr(collector, "_labelnames", None)
        if names:
            collector.labels(*["x"] * len(names))
    metrics.reconcile_duration.observe(0.01)
    return {
        sample.name: set(sample.labels)
        for family in metrics.registry.collect()
        for sample in family.samples
    }


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    found = [
        (f"panel {panel['title']!r} {target['refId']}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            match = LABEL_VALUES.match(var["query"])
            assert match, var["query"]
            found.append((f"variable {var['name']}", match["selector"]))
    return found


def selectors(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """([(metric, matcher labels)], grouping labels) of a PromQL expression."""
    promql = _module("promql_parser", "promql-parser")
    tree = promql.parse(GRAFANA_VARIABLES.sub("5m", expr))
    found: list[tuple[str, set[str]]] = []
    grouping: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql.VectorSelector):
            found.append((node.name, {m.name for m in node.matchers.matchers}))
        elif isinstance(node, promql.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        return True

    promql.walk(tree, visit)
    return found, grouping


def test_dashboard_shipped_json_is_what_the_builder_builds(dashboard: dict[str, Any]) -> None:
    from tests.unit.chart.grafana_dashboard import build

    assert dashboard == build(), (
        "charts/tensorgate/dashboards/tensorgate-operator.json is stale: run "
        "`PYTHONPATH=operator .venv/bin/python -m tests.unit.chart.grafana_dashboard`"
    )


def test_dashboard_has_the_schema_required_keys_and_round_trips(
    dashboard: dict[str, Any],
) -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    # What the dashboard schema requires (the SDK's model always writes these) and what an
    # importable, provisioned dashboard needs.
    required = {"editable", "graphTooltip", "schemaVersion", "templating", "annotations"}
    assert required | {"title", "uid", "panels", "time"} <= set(dashboard)
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    model = Dashboard.from_json(dashboard)
    again = json.loads(json.dumps(model, cls=JSONEncoder))
    assert again["uid"] == dashboard["uid"] and len(again["panels"]) == len(dashboard["panels"])


def test_dashboard_panels_are_complete_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        assert panel["type"] and panel["title"], panel
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, (panel["title"], cells[(x, y)])
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


def test_dashboard_queries_name_only_metrics_and_labels_the_operator_exports(
    dashboard: dict[str, Any],
) -> None:
    series = exported()
    used: set[str] = set()
    for where, expr in expressions(dashboard):
        found, grouping = selectors(expr)
        assert found, (where, expr)
        labels: set[str] = set()
        for metric, matchers in found:
            assert metric in series, f"{where}: {metric} is not exported ({sorted(series)})"
            assert matchers <= series[metric], (where, metric, matchers - series[metric])
            labels |= series[metric]
            used.add(metric)
        assert grouping <= labels, (where, grouping - labels)
    # The list: rollouts, rollbacks by reason, phase, gate accuracy, reconcile latency.
    assert used >= {
        "tensorgate_rollouts_total",
        "tensorgate_promotions_total",
        "tensorgate_rollbacks_total",
        "tensorgate_rollout_phase",
        "tensorgate_gate_accuracy",
        "tensorgate_check_results_total",
        "tensorgate_reconcile_duration_seconds_bucket",
    }


def test_dashboard_query_check_catches_a_metric_the_operator_does_not_export() -> None:
    series = exported()
    found, _ = selectors(
        'sum(rate(tensorgate_rollout_total{namespace=~"$namespace"}[$__rate_interval]))'
    )
    assert [m for m, _ in found if m not in series] == ["tensorgate_rollout_total"]


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    helm_python = _module("helm_python", "helm-python-sdk (the Helm engine)")
    rendered = helm_python.Chart.load(str(CHART)).render(
        values, name=RELEASE, namespace=NAMESPACE, is_install=True
    )
    return [
        doc
        for path, text in rendered.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def test_chart_grafana_dashboard_configmap_carries_the_sidecar_label_and_the_json(
    dashboard: dict[str, Any],
) -> None:
    values = {
        "grafana": {
            "dashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "labels": {"release": "kube-prometheus"},
                "annotations": {"grafana_folder": "TensorGate"},
            }
        }
    }
    maps = [o for o in _render(values) if o["kind"] == "ConfigMap"]
    assert len(maps) == 1
    cm = maps[0]
    meta = cm["metadata"]
    assert meta["name"] == f"{FULLNAME}-dashboard" and meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["labels"]["release"] == "kube-prometheus"
    assert meta["annotations"] == {"grafana_folder": "TensorGate"}
    assert json.loads(cm["data"]["tensorgate-operator.json"]) == dashboard
    assert len(json.dumps(cm).encode()) < 1024 * 1024  # a ConfigMap's limit


def test_chart_grafana_dashboard_is_off_by_default() -> None:
    assert not [o for o in _render({}) if o["kind"] == "ConfigMap"]


@pytest.mark.parametrize(
    "dashboard_values",
    [{"enabled": "yes"}, {"namespace": "Not_A_Namespace"}, {"label": "x"}],
    ids=["enabled-not-bool", "bad-namespace", "unknown-key"],
)
def test_chart_grafana_dashboard_values_are_checked(dashboard_values: dict[str, Any]) -> None:
    helm_python = _module("helm_python", "helm-python-sdk (the Helm engine)")
    with pytest.raises(helm_python.HelmValuesError):
        _render({"grafana": {"dashboard": dashboard_values}})
