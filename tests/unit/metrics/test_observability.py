"""The operator's own metrics: derived from status transitions, served on /metrics."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tensorgate.api.reasons import Reason
from tensorgate.engine.rollout import Event
from tensorgate.observability import OperatorMetrics
from tests.unit.ledger.scenario import full_story


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def play(metrics: OperatorMetrics) -> None:
    for old, new, _ in full_story():
        events = []
        if new.get("phase") == "RolledBack":
            events = [Event(Reason.ACCURACY_GATE_FAILED, "rolled back 3 to 2", warning=True)]
        metrics.observe_outcome("ml", "mnist", old, new, events)
        metrics.observe_outcome("ml", "mnist", new, new, [])  # an idle tick changes nothing


def test_observe_outcome_counts_rollouts_promotions_rollbacks() -> None:
    m = OperatorMetrics()
    play(m)
    ml = {"namespace": "ml", "model": "mnist"}
    assert value(m, "tensorgate_rollouts_total", **ml) == 2
    assert value(m, "tensorgate_promotions_total", **ml) == 1
    assert value(m, "tensorgate_rollbacks_total", **ml, reason="AccuracyGateFailed") == 1


def test_observe_outcome_phase_gauge_is_one_hot() -> None:
    m = OperatorMetrics()
    play(m)
    ml = {"namespace": "ml", "model": "mnist"}
    assert value(m, "tensorgate_rollout_phase", **ml, phase="RolledBack") == 1
    assert value(m, "tensorgate_rollout_phase", **ml, phase="Promoted") == 0
    m.forget("ml", "mnist")
    assert value(m, "tensorgate_rollout_phase", **ml, phase="RolledBack") is None


def test_observe_outcome_checks_and_gate_accuracy() -> None:
    m = OperatorMetrics()
    play(m)
    ml = {"namespace": "ml", "model": "mnist"}
    assert value(m, "tensorgate_gate_accuracy", **ml, track="canary") == 0.11
    assert value(m, "tensorgate_gate_accuracy", **ml, track="stable") == 0.94
    assert (
        value(m, "tensorgate_check_results_total", **ml, check="accuracy-gate", result="passed")
        == 1
    )
    assert (
        value(m, "tensorgate_check_results_total", **ml, check="accuracy-gate", result="failed")
        == 1
    )
    assert (
        value(m, "tensorgate_check_results_total", **ml, check="smoke/signature", result="passed")
        == 2
    )
    old = {
        "phase": "Progressing",
        "checksStep": 0,
        "checks": [{"name": "error-rate", "passed": True}],
    }
    new = {**old, "checksStep": 1, "checks": [{"name": "error-rate", "passed": False}]}
    m.observe_outcome("ml", "mnist", old, new, [])
    assert (
        value(m, "tensorgate_check_results_total", **ml, check="error-rate", result="failed") == 1
    )


def test_reconcile_timer_observes_duration() -> None:
    m = OperatorMetrics()
    with m.reconcile_timer():
        pass
    assert value(m, "tensorgate_reconcile_duration_seconds_count") == 1


def test_metrics_server_serves_on_loopback_free_port() -> None:
    m = OperatorMetrics()
    m.observe_outcome("ml", "mnist", {}, {"phase": "Deploying", "rolloutId": "1-1"}, [])
    server = m.start_server("127.0.0.1", 0)
    try:
        assert server.port > 0
        text = httpx.get(server.url, timeout=5).text
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {
            "tensorgate_rollouts",
            "tensorgate_rollout_phase",
            "tensorgate_reconcile_duration_seconds",
        } <= names
    finally:
        server.stop()
