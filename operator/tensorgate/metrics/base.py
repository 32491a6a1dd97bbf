"""The metrics edge: one Protocol, two implementations (``prometheus``, ``scrape``).

A provider measures one :class:`~tensorgate.api.spec.MetricCheck` on one track and returns a
:class:`Measurement` (re-exported from ``engine.analysis``, where it is judged):

- ``Verdict.MEASURED`` with a value;
- ``Verdict.NO_DATA`` when nothing was served in the window (no series, zero requests, NaN):
  a failed check, never a pass;
- ``Verdict.ERROR`` when the query itself is wrong (Prometheus rejected it): a failed check
  that retrying cannot fix.

Transport failures (timeouts, connection refused, 5xx after bounded retries) raise an
``EdgeError`` (``PrometheusError``, or ``ServingError`` for a pod scrape) instead: the
reconciler retries the step on its next tick rather than judging a metric it could not read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tensorgate.api.spec import MetricCheck, ModelDeploymentSpec, parse_duration_s
from tensorgate.engine.analysis import Measurement, Verdict

__all__ = ["Measurement", "MetricsProvider", "Target", "Verdict"]


@dataclass(frozen=True)
class Target:
    """What to measure: one track of one ModelDeployment over one analysis interval."""

    namespace: str
    name: str
    """The ModelDeployment's name: ``{{model}}`` in templates (pod label tensorgate.dev/model)."""
    model_name: str
    """TF Serving's model name (``model_name`` label of its metrics)."""
    track: str
    """``stable`` or ``canary`` (pod label tensorgate.dev/track)."""
    interval_s: float
    endpoints: tuple[str, ...] = ()
    """``host:port`` REST addresses of the track's ready pods (used by ``scrape``)."""
    rollout_id: str | None = None
    """The rollout this window belongs to: a provider's kept state is per rollout."""

    @classmethod
    def of(
        cls,
        body: Mapping[str, Any],
        spec: ModelDeploymentSpec,
        track: str,
        endpoints: Sequence[str] = (),
    ) -> Target:
        """The target of ``track`` of a ModelDeployment resource ``body``."""
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        return cls(
            namespace=str(meta.get("namespace") or "default"),
            name=str(meta.get("name") or spec.model.name),
            model_name=spec.model.name,
            track=track,
            interval_s=parse_duration_s(spec.analysis.interval),
            endpoints=tuple(endpoints),
            rollout_id=status.get("rolloutId"),
        )

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.name, self.track)


class MetricsProvider(Protocol):
    """Reads one metric of one track. Never raises for a failed or empty measurement."""

    async def measure(self, check: MetricCheck, target: Target) -> Measurement:
        """Measure ``check`` on ``target`` over its interval (the window ending now)."""
        ...

    async def begin(self, target: Target) -> None:
        """Start an analysis window now (when a step's weight is applied); may do nothing."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
