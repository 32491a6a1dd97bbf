"""Build the operator's Grafana dashboard with grafana-foundation-sdk (Grafana's own maintained
builders, generated from the dashboard schema) and write it into the chart.

    PYTHONPATH=operator python -m tests.unit.chart.grafana_dashboard   # rewrites DASHBOARD_JSON

The chart ships the JSON (charts/tensorgate/dashboards/) in a ConfigMap labelled
``grafana_dashboard: "1"`` (``grafana.dashboard.enabled``); test_grafana_dashboard.py checks the
shipped file is what this module builds, and that every query names only metrics the operator
exports (tensorgate/observability.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD_JSON = ROOT / "charts" / "tensorgate" / "dashboards" / "tensorgate-operator.json"
UID = "tensorgate-operator"

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'namespace=~"$namespace", model=~"$model"'


def _query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend or "__auto")
        .ref_id(ref)
        .datasource(DATASOURCE)
    )


def _total(title: str, metric: str, description: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_query(f"sum(increase({metric}{{{SEL}}}[$__range]))"))
        .unit("short")
        .decimals(0)
        .height(4)
        .span(6)
    )


def _variable(name: str, query: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(name)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
        .all_value(".*")
        .multi(True)
    )


def build() -> dict[str, Any]:
    """The dashboard as the JSON Grafana imports."""
    builder = (
        db.Dashboard("TensorGate operator")
        .uid(UID)
        .description(
            "Rollouts, promotions, rollbacks by reason, phases, golden-set accuracy and the "
            "operator's reconcile latency (metrics of tensorgate/observability.py)."
        )
        .tags(["tensorgate", "kubernetes", "ml"])
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .time("now-24h", "now")
        .refresh("1m")
        .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(_variable("namespace", "label_values(tensorgate_rollout_phase, namespace)"))
        .with_variable(
            _variable(
                "model", 'label_values(tensorgate_rollout_phase{namespace=~"$namespace"}, model)'
            )
        )
        .with_row(db.Row("Rollouts"))
        .with_panel(
            _total("Rollouts started", "tensorgate_rollouts_total", "In the selected time range.")
        )
        .with_panel(
            _total("Promotions", "tensorgate_promotions_total", "Rollouts that were promoted.")
        )
        .with_panel(
            _total("Rollbacks", "tensorgate_rollbacks_total", "Rollouts that were rolled back.")
        )
        .with_panel(
            stat.Panel()
            .title("Models in flight")
            .description("ModelDeployments in a rollout phase now.")
            .datasource(DATASOURCE)
            .with_target(
                _query(
                    "sum(tensorgate_rollout_phase{"
                    + SEL
                    + ', phase=~"Deploying|SmokeTesting|Evaluating|Progressing|Promoting|Paused"})'
                )
            )
            .decimals(0)
            .height(4)
            .span(6)
        )
        .with_panel(
            timeseries.Panel()
            .title("Rollbacks by reason")
            .description("Why rollouts were rolled back (the CamelCase reason of the rollback).")
            .datasource(DATASOURCE)
            .with_target(
                _query(
                    f"sum by (reason) (increase(tensorgate_rollbacks_total{{{SEL}}}"
                    "[$__rate_interval]))",
                    "{{reason}}",
                )
            )
            .unit("short")
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Rollouts and promotions")
            .datasource(DATASOURCE)
            .with_target(
                _query(
                    f"sum(increase(tensorgate_rollouts_total{{{SEL}}}[$__rate_interval]))",
                    "started",
                    "A",
                )
            )
            .with_target(
                _query(
                    f"sum(increase(tensorgate_promotions_total{{{SEL}}}[$__rate_interval]))",
                    "promoted",
                    "B",
                )
            )
            .unit("short")
            .height(8)
            .span(12)
        )
        .with_row(db.Row("Models"))
        .with_panel(
            table.Panel()
            .title("Current phase")
            .description("Each ModelDeployment's phase (tensorgate_rollout_phase == 1).")
            .datasource(DATASOURCE)
            .with_target(
                _query(
                    f"max by (namespace, model, phase) (tensorgate_rollout_phase{{{SEL}}}) == 1",
                    "{{namespace}}/{{model}}: {{phase}}",
                )
                .instant()
                .format(PromQueryFormat.TABLE)
            )
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Golden-set accuracy")
            .description("Accuracy of the last golden-set comparison, stable and canary track.")
            .datasource(DATASOURCE)
            .with_target(
                _query(
                    f"max by (namespace, model, track) (tensorgate_gate_accuracy{{{SEL}}})",
                    "{{namespace}}/{{model}} {{track}}",
                )
            )
            .unit("percentunit")
            .min(0)
            .max(1)
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Check verdicts")
            .description("Metric, smoke and accuracy-gate checks by result.")
            .datasource(DATASOURCE)
            .with_target(
                _query(
                    f"sum by (check, result) (increase(tensorgate_check_results_total{{{SEL}}}"
                    "[$__rate_interval]))",
                    "{{check}} {{result}}",
                )
            )
            .unit("short")
            .height(8)
            .span(24)
        )
        .with_row(db.Row("Operator"))
        .with_panel(
            timeseries.Panel()
            .title("Reconcile latency")
            .description("Duration of one reconcile tick (p50, p95, p99).")
            .datasource(DATASOURCE)
            .with_target(_latency(0.5, "A"))
            .with_target(_latency(0.95, "B"))
            .with_target(_latency(0.99, "C"))
            .unit("s")
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Reconcile ticks")
            .datasource(DATASOURCE)
            .with_target(
                _query(
                    "sum(rate(tensorgate_reconcile_duration_seconds_count[$__rate_interval]))",
                    "ticks/s",
                )
            )
            .unit("ops")
            .height(8)
            .span(12)
        )
    )
    encoded = json.loads(json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True))
    out: dict[str, Any] = _without_nulls(encoded)
    return out


def _without_nulls(node: Any) -> Any:
    """Drop null fields (Grafana fills in its defaults for absent ones, not for nulls)."""
    if isinstance(node, dict):
        return {k: _without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_without_nulls(v) for v in node]
    return node


def _latency(quantile: float, ref: str) -> prometheus.Dataquery:
    return _query(
        f"histogram_quantile({quantile}, sum by (le) "
        "(rate(tensorgate_reconcile_duration_seconds_bucket[$__rate_interval])))",
        f"p{round(quantile * 100)}",
        ref,
    )


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    DASHBOARD_JSON.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_JSON.write_text(render())
    sys.stdout.write(f"wrote {DASHBOARD_JSON.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
