"""The operator's own metrics, served on ``/metrics`` (prometheus_client).

==============================================  =========  ===================================
name                                            type       labels
==============================================  =========  ===================================
tensorgate_rollouts_total                       counter    namespace, model
tensorgate_promotions_total                     counter    namespace, model
tensorgate_rollbacks_total                      counter    namespace, model, reason
tensorgate_check_results_total                  counter    namespace, model, check, result
tensorgate_gate_accuracy                        gauge      namespace, model, track
tensorgate_rollout_phase                        gauge      namespace, model, phase
tensorgate_reconcile_duration_seconds           histogram  (none)
==============================================  =========  ===================================

``model`` is the ModelDeployment's name. ``tensorgate_rollout_phase`` is 1 for the current
phase and 0 for every other. ``result`` is ``passed`` or ``failed``; ``check`` is a metric
check's name, ``smoke/<name>`` for a smoke check and ``accuracy-gate`` for the golden-set
comparison. ``reason`` is the CamelCase reason of the rollback (``MetricCheckFailed``, ...).

Everything is derived from a status transition by :meth:`OperatorMetrics.observe_outcome`,
so the handler calls one function after it wrote the new status. Each ``OperatorMetrics``
owns its registry (tests make their own); the operator uses :data:`DEFAULT`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from tensorgate.api.reasons import ConditionType, Phase, Reason
from tensorgate.api.status import CheckResult, ModelDeploymentStatus
from tensorgate.engine.rollout import Event

PROMOTED = "Promoted"
ROLLED_BACK = "RolledBack"
UNKNOWN_REASON = "Unknown"
RECONCILE_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip

StatusLike = ModelDeploymentStatus | Mapping[str, Any] | None


def _status(value: StatusLike) -> ModelDeploymentStatus:
    if isinstance(value, ModelDeploymentStatus):
        return value
    return ModelDeploymentStatus.model_validate(dict(value or {}))


def _result(passed: bool) -> str:
    return "passed" if passed else "failed"


class PhaseGauge:
    """``tensorgate_rollout_phase``: 1 for each resource's current phase, 0 for the others,
    collected from one dict (namespace, model) -> phase. A labelled ``Gauge`` keeps a child
    object per phase and resource: eight per ModelDeployment, ~7 KiB each at 1,000 of them."""

    NAME = "tensorgate_rollout_phase"
    DOC = "1 for the resource's current phase, 0 otherwise."
    LABELS = ("namespace", "model", "phase")

    def __init__(self, registry: CollectorRegistry) -> None:
        self._phases: dict[tuple[str, str], Phase] = {}
        self._lock = threading.Lock()  # collect() runs in the metrics server's thread
        registry.register(self)

    def set(self, namespace: str, model: str, phase: Phase) -> None:
        with self._lock:
            self._phases[(namespace, model)] = phase

    def remove(self, namespace: str, model: str) -> None:
        with self._lock:
            self._phases.pop((namespace, model), None)

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(self.NAME, self.DOC, labels=self.LABELS)]

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.NAME, self.DOC, labels=self.LABELS)
        with self._lock:
            current = list(self._phases.items())
        for (namespace, model), now in current:
            for phase in Phase:
                family.add_metric([namespace, model, phase.value], 1.0 if phase == now else 0.0)
        yield family


@dataclass
class MetricsServer:
    """A running ``/metrics`` endpoint."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self, timeout_s: float = 5.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout_s)


class OperatorMetrics:
    """The operator's metrics in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.rollouts = Counter(
            "tensorgate_rollouts_total", "Rollouts started.", ["namespace", "model"], registry=r
        )
        self.promotions = Counter(
            "tensorgate_promotions_total", "Rollouts promoted.", ["namespace", "model"], registry=r
        )
        self.rollbacks = Counter(
            "tensorgate_rollbacks_total",
            "Rollouts rolled back.",
            ["namespace", "model", "reason"],
            registry=r,
        )
        self.check_results = Counter(
            "tensorgate_check_results_total",
            "Check verdicts (metric, smoke, accuracy gate).",
            ["namespace", "model", "check", "result"],
            registry=r,
        )
        self.gate_accuracy = Gauge(
            "tensorgate_gate_accuracy",
            "Golden-set accuracy of the last comparison per track.",
            ["namespace", "model", "track"],
            registry=r,
        )
        self.rollout_phase = PhaseGauge(r)
        self.reconcile_duration = Histogram(
            "tensorgate_reconcile_duration_seconds",
            "Time of one reconcile tick.",
            buckets=RECONCILE_BUCKETS_S,
            registry=r,
        )

    # -- the one call of the handler ----------------------------------------------------

    def observe_outcome(
        self,
        namespace: str,
        name: str,
        old_status: StatusLike,
        new_status: StatusLike,
        events: Sequence[Event] = (),
    ) -> None:
        """Update every metric from one status transition (idempotent for no change)."""
        old, new = _status(old_status), _status(new_status)
        labels = {"namespace": namespace, "model": name}
        if new.rollout_id and new.rollout_id != old.rollout_id:
            self.rollouts.labels(**labels).inc()
        self._observe_phase(labels, new)
        self._observe_checks(labels, old, new)
        self._observe_gate(labels, old, new)
        ended = self._ended(old, new)
        if ended == PROMOTED:
            self.promotions.labels(**labels).inc()
        elif ended == ROLLED_BACK:
            self.rollbacks.labels(**labels, reason=self._rollback_reason(new, events)).inc()

    def _observe_phase(self, labels: dict[str, str], new: ModelDeploymentStatus) -> None:
        if new.phase is None:
            return
        self.rollout_phase.set(labels["namespace"], labels["model"], new.phase)

    def _count(self, labels: dict[str, str], checks: Sequence[CheckResult], prefix: str) -> None:
        for c in checks:
            self.check_results.labels(
                **labels, check=prefix + c.name, result=_result(c.passed)
            ).inc()

    def _observe_checks(
        self, labels: dict[str, str], old: ModelDeploymentStatus, new: ModelDeploymentStatus
    ) -> None:
        if new.checks and (new.checks_step, new.checks) != (old.checks_step, old.checks):
            self._count(labels, new.checks, "")
        old_smoke = old.gate.smoke if old.gate else []
        new_smoke = new.gate.smoke if new.gate else []
        if new_smoke and new_smoke != old_smoke:
            self._count(labels, new_smoke, "smoke/")

    def _observe_gate(
        self, labels: dict[str, str], old: ModelDeploymentStatus, new: ModelDeploymentStatus
    ) -> None:
        gate = new.gate
        if gate is None or not gate.compared:
            return
        if gate.stable_accuracy is not None:
            self.gate_accuracy.labels(**labels, track="stable").set(gate.stable_accuracy)
        if gate.canary_accuracy is not None:
            self.gate_accuracy.labels(**labels, track="canary").set(gate.canary_accuracy)
        if not (old.gate and old.gate.compared and old.gate.version == gate.version):
            self.check_results.labels(
                **labels, check="accuracy-gate", result=_result(gate.decision == "promote")
            ).inc()

    @staticmethod
    def _ended(old: ModelDeploymentStatus, new: ModelDeploymentStatus) -> str | None:
        """The decision of a rollout that ended in this transition, if one did."""
        if not new.history:
            return None
        head = new.history[0]
        if old.history and old.history[0] == head:
            return None
        return head.decision

    @staticmethod
    def _rollback_reason(new: ModelDeploymentStatus, events: Sequence[Event]) -> str:
        for event in events:
            if event.warning and event.reason not in {Reason.SUPERSEDED, Reason.EDGE_ERROR}:
                return str(event.reason)
        for cond in new.conditions:
            if cond.type == ConditionType.DEGRADED and cond.status == "True":
                return cond.reason
        head = new.history[0].reason if new.history else ""
        prefix = head.split(":", 1)[0]
        return prefix if prefix in {r.value for r in Reason} else UNKNOWN_REASON

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted resource's gauges (counters stay: they are totals)."""
        self.rollout_phase.remove(namespace, name)
        for track in ("stable", "canary"):
            with suppress(KeyError):
                self.gate_accuracy.remove(namespace, name, track)

    @contextmanager
    def reconcile_timer(self) -> Iterator[None]:
        """``with metrics.reconcile_timer(): ...`` observes one tick's duration."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.reconcile_duration.observe(time.perf_counter() - start)

    def start_server(self, host: str, port: int) -> MetricsServer:
        """Serve this registry on ``http://host:port/metrics`` (port 0: a free port)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(host, int(server.server_address[1]), server, thread)


DEFAULT = OperatorMetrics()
"""The operator process's metrics."""


def start_metrics_server(
    host: str, port: int, metrics: OperatorMetrics | None = None
) -> MetricsServer:
    """Serve the operator's metrics (``Settings.metrics_host``/``metrics_port``)."""
    return (metrics or DEFAULT).start_server(host, port)


def observe_outcome(
    namespace: str,
    name: str,
    old_status: StatusLike,
    new_status: StatusLike,
    events: Sequence[Event] = (),
    metrics: OperatorMetrics | None = None,
) -> None:
    """Update the operator's metrics from one status transition (see the module doc)."""
    (metrics or DEFAULT).observe_outcome(namespace, name, old_status, new_status, events)
