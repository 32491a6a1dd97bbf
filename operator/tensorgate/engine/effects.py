"""What the engine sees (observations) and what it asks for (effects, Events, Decisions).

Pure data: the executor (``reconcile.py``) turns each effect into edge calls, and the outcome
of a ``Run*`` effect comes back as typed data in status for the next ``decide``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tensorgate.api.reasons import Reason
from tensorgate.api.spec import ModelDeploymentSpec, ModelRef, WebhookType
from tensorgate.api.status import ModelDeploymentStatus
from tensorgate.engine.conditions import ConditionChange
from tensorgate.engine.replicas import TrackObservation


class Command(StrEnum):
    """A human's instruction (``kubectl tensorgate promote|abort|retry``)."""

    PROMOTE = "promote"
    ABORT = "abort"
    RETRY = "retry"


@dataclass(frozen=True)
class CommandRequest:
    """A command annotation on the resource; ``id`` makes it apply exactly once."""

    id: str
    name: str


@dataclass(frozen=True)
class Observations:
    spec: ModelDeploymentSpec
    generation: int
    now: datetime
    revision: str = ""
    stable: TrackObservation = field(default_factory=TrackObservation)
    canary: TrackObservation = field(default_factory=TrackObservation)
    command: CommandRequest | None = None
    # Rows the accuracy gate will score (goldenSet.maxSamples applied), read when a rollout
    # starts; None when not read or unreadable (the gate judges it at evaluation).
    golden_rows: int | None = None


# --- effects -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyTrack:
    """Create or scale a track's Deployment to serve ``model`` at ``revision``."""

    track: str
    model: ModelRef
    replicas: int
    revision: str | None = None


@dataclass(frozen=True)
class DeleteCanary:
    """Remove the canary Deployment."""


@dataclass(frozen=True)
class Route:
    """Send ``weight`` percent of user traffic to the canary."""

    weight: int


@dataclass(frozen=True)
class RunSmoke:
    """Run smoke inference against ``track``; the outcome lands in status.gate."""

    track: str


@dataclass(frozen=True)
class RunComparison:
    """Score the golden set on stable and canary; the outcome lands in status.gate."""


@dataclass(frozen=True)
class BeginAnalysis:
    """A step's analysis window starts now (providers take their baseline)."""


@dataclass(frozen=True)
class RunAnalysis:
    """Judge the metric checks for the current step; the outcome lands in status.checks."""

    step: int


@dataclass(frozen=True)
class RunHooks:
    """Call the webhooks of ``type`` and wait for their answers; they land in status.hooks
    (``step``: the step they are called at, for rollback hooks)."""

    type: WebhookType
    step: int | None = None


@dataclass(frozen=True)
class PostEvent:
    """Hand an Event (a phase change or a failed check) to the ``event`` webhooks: queued,
    never waited for."""

    reason: Reason | None  # None: a phase change that has no Event of its own
    message: str


Effect = (
    ApplyTrack
    | DeleteCanary
    | Route
    | BeginAnalysis
    | RunSmoke
    | RunComparison
    | RunAnalysis
    | RunHooks
    | PostEvent
)
RUN_EFFECTS = (RunSmoke, RunComparison, RunAnalysis, RunHooks)


@dataclass(frozen=True)
class Event:
    reason: Reason
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Decision:
    """One decision: the new status, the effects in order, an Event, condition changes, and
    when to decide again (``requeue_s``; 0 = at once, None = only when something changes)."""

    status: ModelDeploymentStatus
    effects: tuple[Effect, ...] = ()
    event: Event | None = None
    conditions: tuple[ConditionChange, ...] = ()
    requeue_s: float | None = None

    @property
    def runs_check(self) -> bool:
        return any(isinstance(e, RUN_EFFECTS) for e in self.effects)
