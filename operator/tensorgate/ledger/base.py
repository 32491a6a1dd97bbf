"""The ledger edge: one Protocol, the records it returns, and the pure transition plan.

A status transition (old status -> new status, as the reconciler produced it) becomes a
:class:`TransitionPlan` (:func:`plan_transition`, pure), which an implementation writes in ONE
transaction: the rollout row (created on first sight), the gate result (upserted), the phase
change, and the rollout's end (decision, reason, finished_at; a promoted rollout keeps the
full model spec it ran with, which ``tensorgate revert`` puts back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from tensorgate.api.spec import AnalysisSpec
from tensorgate.api.status import GateStatus, ModelDeploymentStatus
from tensorgate.errors import LedgerError

PROMOTED = "Promoted"
FIRST_DEPLOY_PREFIX = "initial-"

StatusLike = ModelDeploymentStatus | Mapping[str, Any] | None


class LedgerUnavailable(LedgerError):
    """The database could not be reached (after the bounded retries): worth trying again later.

    Any other ``LedgerError`` (a constraint, a row the plan expects but the ledger lacks) would
    fail the same way on every retry.
    """


@dataclass(frozen=True)
class PhaseChange:
    at: datetime
    from_phase: str | None
    to_phase: str
    message: str = ""


@dataclass(frozen=True)
class GateResult:
    stable_accuracy: float | None = None
    canary_accuracy: float | None = None
    drop: float | None = None
    upper_bound: float | None = None
    p_value: float | None = None
    samples: int | None = None
    decision: str | None = None
    smoke_passed: bool | None = None
    smoke: tuple[dict[str, Any], ...] = ()
    inputs: dict[str, Any] | None = None
    """What the verdict was decided from: ``{"gate": <status.gate, whole>, "spec":
    {"maxAccuracyDrop", "confidence"}}`` (see :func:`verdict_inputs`); None in rows written
    before migration ``0002``."""


@dataclass(frozen=True)
class RolloutRecord:
    """One rollout as the ledger knows it (``decision`` None: still in flight)."""

    id: int
    namespace: str
    model: str
    rollout_key: str
    candidate_version: str
    stable_version: str | None
    started_at: datetime
    finished_at: datetime | None = None
    decision: str | None = None
    reason: str = ""
    gate: GateResult | None = None
    phases: tuple[PhaseChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        gate = self.gate
        return {
            "id": self.id,
            "namespace": self.namespace,
            "model": self.model,
            "rolloutKey": self.rollout_key,
            "candidateVersion": self.candidate_version,
            "stableVersion": self.stable_version,
            "startedAt": _iso(self.started_at),
            "finishedAt": _iso(self.finished_at),
            "decision": self.decision,
            "reason": self.reason,
            "gate": None
            if gate is None
            else {
                "stableAccuracy": gate.stable_accuracy,
                "canaryAccuracy": gate.canary_accuracy,
                "drop": gate.drop,
                "upperBound": gate.upper_bound,
                "pValue": gate.p_value,
                "samples": gate.samples,
                "decision": gate.decision,
                "smokePassed": gate.smoke_passed,
                "smoke": list(gate.smoke),
                "inputs": gate.inputs,
            },
            "phases": [
                {"at": _iso(p.at), "from": p.from_phase, "to": p.to_phase, "message": p.message}
                for p in self.phases
            ],
        }


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Ledger(Protocol):
    """The decision history of every ModelDeployment."""

    async def record_transition(
        self,
        namespace: str,
        name: str,
        old_status: StatusLike,
        new_status: StatusLike,
        spec: Mapping[str, Any],
        *,
        now: datetime | None = None,
    ) -> None:
        """Write what changed between two statuses, in one transaction (or nothing).

        ``now`` (default: the ledger's clock) dates what the statuses leave undated; a replayed
        transition passes the time it first happened, so writing it twice writes nothing new.
        """
        ...

    async def history(self, namespace: str, name: str, limit: int = 20) -> list[RolloutRecord]:
        """A model's rollouts, newest first, with gate results and phase changes."""
        ...

    async def promoted_spec(self, namespace: str, name: str, version: str) -> dict[str, Any] | None:
        """The full spec the newest promotion of ``version`` ran with; None if never promoted."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


# --- the pure part -------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutStart:
    key: str
    candidate_version: str
    stable_version: str | None
    started_at: datetime
    spec: dict[str, Any]


@dataclass(frozen=True)
class RolloutEnd:
    key: str
    decision: str
    reason: str
    finished_at: datetime
    spec: dict[str, Any] | None
    """Set for a promotion: the spec the promoted version ran with."""


@dataclass(frozen=True)
class TransitionPlan:
    """What one status transition writes. Empty when nothing worth keeping changed."""

    starts: tuple[RolloutStart, ...] = ()
    gate: tuple[str, GateResult] | None = None
    phase: tuple[str, PhaseChange] | None = None
    ends: tuple[RolloutEnd, ...] = field(default_factory=tuple)

    @property
    def is_empty(self) -> bool:
        return not (self.starts or self.gate or self.phase or self.ends)


def as_status(value: StatusLike) -> ModelDeploymentStatus:
    if isinstance(value, ModelDeploymentStatus):
        return value
    return ModelDeploymentStatus.model_validate(dict(value or {}))


def parse_ts(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return default


def verdict_inputs(
    gate: GateStatus, spec: Mapping[str, Any], raw_gate: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What a gate verdict was decided from, as JSON: the whole ``status.gate`` (``raw_gate``,
    the status's own dict when there is one, keeps fields this version's ``GateStatus`` does
    not know yet) and the spec's margin and confidence (defaults filled in)."""
    raw_analysis = spec.get("analysis")
    analysis: Mapping[str, Any] = raw_analysis if isinstance(raw_analysis, Mapping) else {}
    fields = AnalysisSpec.model_fields
    return {
        "gate": {**gate.to_dict(), **dict(raw_gate or {})},
        "spec": {
            "maxAccuracyDrop": analysis.get("maxAccuracyDrop", fields["max_accuracy_drop"].default),
            "confidence": analysis.get("confidence", fields["confidence"].default),
        },
    }


def _gate_result(
    gate: GateStatus, spec: Mapping[str, Any], raw_gate: Mapping[str, Any] | None
) -> GateResult:
    return GateResult(
        stable_accuracy=gate.stable_accuracy,
        canary_accuracy=gate.canary_accuracy,
        drop=gate.delta,
        upper_bound=gate.upper_bound,
        p_value=gate.p_value,
        samples=gate.samples,
        decision=gate.decision,
        smoke_passed=gate.smoke_passed,
        smoke=tuple(c.to_dict() for c in gate.smoke),
        inputs=verdict_inputs(gate, spec, raw_gate),
    )


def _raw_gate(status: StatusLike) -> Mapping[str, Any] | None:
    if isinstance(status, Mapping) and isinstance(status.get("gate"), Mapping):
        return dict(status["gate"])
    return None


def _spec_version(spec: Mapping[str, Any]) -> str:
    return str((spec.get("model") or {}).get("version") or "")


def plan_transition(
    old_status: StatusLike, new_status: StatusLike, spec: Mapping[str, Any], now: datetime
) -> TransitionPlan:
    """The rows one transition writes (pure; ``now`` is used only when status has no time)."""
    old, new = as_status(old_status), as_status(new_status)
    spec_dict = dict(spec)
    at = parse_ts(new.phase_started_at, now)
    first_deploy = old.stable_model is None
    key = new.rollout_id or (
        f"{FIRST_DEPLOY_PREFIX}{_spec_version(spec)}" if first_deploy else old.rollout_id
    )
    phase_changed = new.phase is not None and new.phase != old.phase

    starts: list[RolloutStart] = []
    ends: list[RolloutEnd] = []
    # A rollout that ended in this transition (history gained an entry). When a newer spec
    # superseded it, the new status already carries the new rollout's id: the old one ends.
    if new.history and (not old.history or old.history[0] != new.history[0]):
        head = new.history[0]
        ended_key = old.rollout_id if old.rollout_id and old.rollout_id != key else key
        if ended_key:
            ends.append(
                RolloutEnd(
                    ended_key,
                    head.decision,
                    head.reason,
                    parse_ts(head.at, now),
                    spec_dict if head.decision == PROMOTED else None,
                )
            )
    elif first_deploy and new.stable_model is not None and key:
        ends.append(RolloutEnd(key, PROMOTED, "first deploy", at, spec_dict))

    if key and (phase_changed or ends or (new.gate != old.gate and new.gate is not None)):
        candidate = (
            new.canary_version
            or (new.stable_model.version if first_deploy and new.stable_model else None)
            or _spec_version(spec)
        )
        starts.append(RolloutStart(key, candidate, old.stable_version, at, spec_dict))
    for end in ends:
        if end.key != key:
            starts.insert(
                0,
                RolloutStart(
                    end.key,
                    old.canary_version or "",
                    old.stable_version,
                    parse_ts(old.phase_started_at, now),
                    spec_dict,
                ),
            )

    gate = None
    if (
        key
        and new.gate is not None
        and new.gate != old.gate
        and (new.gate.smoke_passed is not None or new.gate.compared)
    ):
        gate = (key, _gate_result(new.gate, spec, _raw_gate(new_status)))
    phase = None
    if key and phase_changed and new.phase is not None:
        phase = (key, PhaseChange(at, old.phase, new.phase, new.message or ""))
    return TransitionPlan(tuple(starts), gate, phase, tuple(ends))
