"""The rollout state machine: ``decide(state, observations) -> Decision``. Pure: no I/O, no clock.

The state is the resource's status (so a restarted operator resumes exactly where it stopped);
the observations are what the edges saw this tick (the spec, the tracks' readiness, the time).
A Decision names the effects to execute, in order, the new status, and the Event to post.
Results of slow checks (smoke, golden set, metrics) come back as status fields: the executor
runs a ``Run*`` effect, stores its outcome in status, and calls ``decide`` again.

    (no stable) Deploying -> Promoted
    (new model) Deploying -> SmokeTesting -> Evaluating -> Progressing (steps) -> Promoting
                -> Promoted;  any failed check -> RolledBack (or Paused when not automatic)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from tensorgate.api.reasons import ConditionType, Phase, Reason
from tensorgate.api.spec import ModelDeploymentSpec, ModelRef, parse_duration_s
from tensorgate.api.status import (
    CheckResult,
    GateStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    StableModel,
)
from tensorgate.engine.conditions import ConditionChange

HISTORY_LIMIT = 10
POLL_S = 2.0
IN_FLIGHT = {
    Phase.DEPLOYING,
    Phase.SMOKE_TESTING,
    Phase.EVALUATING,
    Phase.PROGRESSING,
    Phase.PROMOTING,
    Phase.PAUSED,
}


# --- observations ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackObservation:
    """What the platform reports about one track's serving pods."""

    exists: bool = False
    version: str | None = None
    desired: int = 0
    ready: int = 0
    updated: int = 0
    unschedulable: str | None = None  # the scheduler's message when a pod cannot be placed

    @property
    def is_ready(self) -> bool:
        return (
            self.exists
            and self.desired > 0
            and self.ready >= self.desired
            and (self.updated >= self.desired)
        )


class Command:
    """A human's instruction, from the kubectl plugin (annotation on the resource)."""

    PROMOTE = "promote"
    ABORT = "abort"


@dataclass(frozen=True)
class Observations:
    spec: ModelDeploymentSpec
    generation: int
    now: datetime
    stable: TrackObservation = field(default_factory=TrackObservation)
    canary: TrackObservation = field(default_factory=TrackObservation)
    command: str | None = None


# --- effects -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyTrack:
    """Create or patch a track's Deployment to serve ``model`` with ``replicas`` pods."""

    track: str
    model: ModelRef
    replicas: int


@dataclass(frozen=True)
class DeleteCanary:
    """Remove the canary Deployment."""


@dataclass(frozen=True)
class Route:
    """Send ``weight`` percent of user traffic to the canary."""

    weight: int


@dataclass(frozen=True)
class RunSmoke:
    """Run smoke inference against ``track``; outcome lands in status.gate."""

    track: str


@dataclass(frozen=True)
class RunComparison:
    """Score the golden set on stable and canary; outcome lands in status.gate."""


@dataclass(frozen=True)
class BeginAnalysis:
    """A step's analysis window starts now (providers take their baseline)."""


@dataclass(frozen=True)
class RunAnalysis:
    """Judge the metric checks for the current step; outcome lands in status.checks."""

    step: int


Effect = ApplyTrack | DeleteCanary | Route | BeginAnalysis | RunSmoke | RunComparison | RunAnalysis
RUN_EFFECTS = (RunSmoke, RunComparison, RunAnalysis)


@dataclass(frozen=True)
class Event:
    reason: Reason
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Decision:
    status: ModelDeploymentStatus
    effects: tuple[Effect, ...] = ()
    event: Event | None = None
    conditions: tuple[ConditionChange, ...] = ()
    requeue_s: float | None = None

    @property
    def runs_check(self) -> bool:
        return any(isinstance(e, RUN_EFFECTS) for e in self.effects)


# --- helpers -----------------------------------------------------------------------------


def _ts(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age_s(since: str | None, now: datetime) -> float:
    if not since:
        return 0.0
    start = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (now - start).total_seconds()


def _stable_ref(status: ModelDeploymentStatus) -> ModelRef | None:
    s = status.stable_model
    return None if s is None else ModelRef(name=s.name, version=s.version, uri=s.uri)


def _same_model(a: ModelRef | None, b: ModelRef) -> bool:
    return a is not None and (a.name, a.version, a.uri) == (b.name, b.version, b.uri)


def canary_replicas(total: int, weight: int) -> int:
    """Canary pods that realise ``weight`` percent with replica counts (at least one)."""
    return max(1, -(-total * weight // 100))


def _ready(reason: Reason, message: str, gen: int, *, ok: bool) -> ConditionChange:
    return ConditionChange(ConditionType.READY, ok, reason, message, gen)


def _progressing(reason: Reason, message: str, gen: int, *, on: bool) -> ConditionChange:
    return ConditionChange(ConditionType.PROGRESSING, on, reason, message, gen)


def _degraded(reason: Reason, message: str, gen: int, *, on: bool) -> ConditionChange:
    return ConditionChange(ConditionType.DEGRADED, on, reason, message, gen)


def _history(
    status: ModelDeploymentStatus, decision: str, reason: str, now: datetime
) -> list[HistoryEntry]:
    gate = status.gate
    entry = HistoryEntry(
        version=status.canary_version or "",
        decision=decision,
        reason=reason,
        at=_ts(now),
        stable_accuracy=gate.stable_accuracy if gate else None,
        canary_accuracy=gate.canary_accuracy if gate else None,
    )
    return [entry, *status.history][:HISTORY_LIMIT]


def _enter(
    status: ModelDeploymentStatus, phase: Phase, now: datetime, **changes: object
) -> ModelDeploymentStatus:
    update: dict[str, object] = {"phase": phase, "phase_started_at": _ts(now), **changes}
    return status.model_copy(update=update)


# --- the decision ------------------------------------------------------------------------


def decide(status: ModelDeploymentStatus, obs: Observations) -> Decision:
    """The one decision for this tick."""
    spec, gen = obs.spec, obs.generation
    stable = _stable_ref(status)
    status = status.model_copy(update={"observed_generation": gen})

    if stable is None:
        return _first_deploy(status, obs)

    if _same_model(stable, spec.model):
        if status.phase in IN_FLIGHT and status.canary_version is not None:
            # The spec went back to the stable model during a rollout: drop the canary.
            return _end_rollout(
                status,
                obs,
                Phase.PROMOTED,
                "Superseded",
                Reason.SUPERSEDED,
                f"rollout of {status.canary_version} "
                f"superseded: spec is back at stable {stable.version}",
            )
        return _steady(status, obs, stable)

    # The spec names a model that is not the stable one: a rollout.
    if (
        status.canary_version is not None
        and status.canary_version != spec.model.version
        and status.phase in IN_FLIGHT
    ):
        return _end_rollout(
            status,
            obs,
            Phase.DEPLOYING,
            "Superseded",
            Reason.SUPERSEDED,
            f"rollout of {status.canary_version} superseded by {spec.model.version}",
            restart=True,
        )
    if status.phase in {Phase.ROLLED_BACK, Phase.FAILED} and (
        status.canary_version == spec.model.version
    ):
        return _after_rollback(status, obs, stable)
    if status.phase not in IN_FLIGHT or status.canary_version != spec.model.version:
        return _start_rollout(status, obs)
    return _advance(status, obs, stable)


def _first_deploy(status: ModelDeploymentStatus, obs: Observations) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    model = spec.model
    apply = ApplyTrack("stable", model, spec.serving.replicas)
    if status.phase != Phase.DEPLOYING:
        status = _enter(status, Phase.DEPLOYING, now, message=f"deploying {model.version}")
        return Decision(
            status,
            (apply, Route(0)),
            Event(Reason.DEPLOYING, f"deploying version {model.version}"),
            (
                _ready(Reason.DEPLOYING, f"waiting for version {model.version}", gen, ok=False),
                _progressing(Reason.DEPLOYING, f"deploying version {model.version}", gen, on=True),
            ),
            POLL_S,
        )
    if obs.stable.is_ready and obs.stable.version == model.version:
        status = _enter(
            status,
            Phase.PROMOTED,
            now,
            stable_model=StableModel(name=model.name, version=model.version, uri=model.uri),
            stable_version=model.version,
            canary_weight=0,
            message=f"version {model.version} serving on {obs.stable.ready} pod(s)",
        )
        return Decision(
            status,
            (apply,),
            Event(Reason.AVAILABLE, f"version {model.version} ready on {obs.stable.ready} pods"),
            _serving_conditions(f"version {model.version} serving", gen),
        )
    return _wait_ready(status, obs, obs.stable, "stable", apply)


def _wait_ready(
    status: ModelDeploymentStatus,
    obs: Observations,
    track: TrackObservation,
    name: str,
    apply: ApplyTrack,
) -> Decision:
    gen = obs.generation
    timeout_s = parse_duration_s(obs.spec.analysis.readiness_timeout)
    waited = _age_s(status.phase_started_at, obs.now)
    progress = f"{track.ready}/{track.desired or apply.replicas} {name} pod(s) ready"
    if track.unschedulable:
        message = f"{name} pods cannot be scheduled: {track.unschedulable}"
        changes: tuple[ConditionChange, ...] = (
            _progressing(Reason.UNSCHEDULABLE, message, gen, on=True),
        )
    else:
        message = progress
        changes = (_progressing(Reason.DEPLOYING, message, gen, on=True),)
    if name == "canary" and waited > timeout_s:
        return _fail(
            status,
            obs,
            Reason.READINESS_TIMEOUT,
            f"canary not ready after {waited:.0f}s > readinessTimeout {timeout_s:.0f}s ({message})",
        )
    status = status.model_copy(update={"message": message})
    if name == "stable" and status.stable_model is None:
        changes = (
            *changes,
            _ready(
                Reason.UNSCHEDULABLE if track.unschedulable else Reason.DEPLOYING,
                message,
                gen,
                ok=False,
            ),
        )
    return Decision(status, (apply,), None, changes, POLL_S)


def _serving_conditions(message: str, gen: int) -> tuple[ConditionChange, ...]:
    return (
        _ready(Reason.AVAILABLE, message, gen, ok=True),
        _progressing(Reason.AVAILABLE, message, gen, on=False),
        _degraded(Reason.AVAILABLE, message, gen, on=False),
    )


def _steady(status: ModelDeploymentStatus, obs: Observations, stable: ModelRef) -> Decision:
    """No rollout: keep the stable track as the spec says (replicas, resources, ...)."""
    spec, gen = obs.spec, obs.generation
    apply = ApplyTrack("stable", stable, spec.serving.replicas)
    effects: tuple[Effect, ...] = (apply, DeleteCanary(), Route(0))
    if status.phase not in {Phase.PROMOTED, Phase.ROLLED_BACK}:
        status = _enter(status, Phase.PROMOTED, obs.now)
    if obs.stable.is_ready:
        message = f"version {stable.version} serving on {obs.stable.ready} pod(s)"
        conds: tuple[ConditionChange, ...] = (
            _ready(Reason.AVAILABLE, message, gen, ok=True),
            _progressing(Reason.AVAILABLE, message, gen, on=False),
        )
        if status.phase == Phase.PROMOTED:
            conds = (*conds, _degraded(Reason.AVAILABLE, message, gen, on=False))
        return Decision(status.model_copy(update={"message": message}), effects, None, conds)
    message = f"stable version {stable.version}: {obs.stable.ready}/{obs.stable.desired} ready"
    if obs.stable.unschedulable:
        message += f"; cannot be scheduled: {obs.stable.unschedulable}"
    reason = Reason.UNSCHEDULABLE if obs.stable.unschedulable else Reason.DEPLOYING
    return Decision(
        status.model_copy(update={"message": message}),
        effects,
        None,
        (_ready(reason, message, gen, ok=False), _progressing(reason, message, gen, on=True)),
        POLL_S,
    )


def _start_rollout(status: ModelDeploymentStatus, obs: Observations) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    stable = _stable_ref(status)
    assert stable is not None
    version = spec.model.version
    status = _enter(
        status,
        Phase.DEPLOYING,
        now,
        canary_version=version,
        canary_weight=0,
        current_step=None,
        failed_checks=0,
        step_started_at=None,
        gate=GateStatus(version=version),
        checks=[],
        checks_step=None,
        rollout_id=f"{version}-{gen}-{_ts(now)}",
        message=f"starting canary {version} (stable {stable.version})",
    )
    return Decision(
        status,
        (
            ApplyTrack("stable", stable, spec.serving.replicas),
            ApplyTrack("canary", spec.model, 1),
            Route(0),
        ),
        Event(
            Reason.DEPLOYING,
            f"rollout of {version} started (stable {stable.version}); "
            "canary receives no traffic until it passes smoke and golden-set checks",
        ),
        (_progressing(Reason.DEPLOYING, f"deploying canary {version}", gen, on=True),),
        POLL_S,
    )


def _advance(status: ModelDeploymentStatus, obs: Observations, stable: ModelRef) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    version = spec.model.version
    gate = status.gate or GateStatus(version=version)
    weight = status.canary_weight or 0
    canary_replicas_now = 1 if weight == 0 else canary_replicas(spec.serving.replicas, weight)
    keep = (
        ApplyTrack("stable", stable, spec.serving.replicas),
        ApplyTrack("canary", spec.model, canary_replicas_now),
    )

    if obs.command == Command.ABORT:
        return _fail(status, obs, Reason.ABORTED, "rollout aborted by a user", automatic=True)

    if status.phase == Phase.PAUSED:
        return Decision(status, keep, None, (), POLL_S)

    if status.phase == Phase.DEPLOYING:
        if obs.canary.is_ready and obs.canary.version == version:
            status = _enter(
                status, Phase.SMOKE_TESTING, now, message=f"smoke-testing canary {version}"
            )
            return Decision(
                status,
                (*keep, RunSmoke("canary")),
                Event(Reason.SMOKE_TESTING, f"canary {version} ready; smoke testing"),
                (_progressing(Reason.SMOKE_TESTING, f"smoke-testing {version}", gen, on=True),),
            )
        return _wait_ready(status, obs, obs.canary, "canary", keep[1])

    if status.phase == Phase.SMOKE_TESTING:
        if gate.smoke_passed is None:
            return Decision(status, (*keep, RunSmoke("canary")))
        if not gate.smoke_passed:
            failed = "; ".join(c.message for c in gate.smoke if not c.passed) or "smoke failed"
            return _fail(status, obs, Reason.SMOKE_TEST_FAILED, failed)
        if spec.golden_set is None:
            return _start_progress(
                status,
                obs,
                Reason.SMOKE_TEST_PASSED,
                f"smoke passed ({len(gate.smoke)} checks); no golden set",
            )
        status = _enter(
            status,
            Phase.EVALUATING,
            now,
            message=f"scoring golden set on stable {stable.version} and {version}",
        )
        return Decision(
            status,
            (*keep, RunComparison()),
            Event(
                Reason.SMOKE_TEST_PASSED,
                f"smoke passed ({len(gate.smoke)} checks); scoring golden set",
            ),
            (_progressing(Reason.EVALUATING, "scoring golden set", gen, on=True),),
        )

    if status.phase == Phase.EVALUATING:
        if not gate.compared:
            return Decision(status, (*keep, RunComparison()))
        if gate.decision != "promote":
            return _fail(
                status,
                obs,
                Reason.ACCURACY_GATE_FAILED,
                "; ".join(gate.reasons) or "accuracy gate failed",
            )
        return _start_progress(status, obs, Reason.ACCURACY_GATE_PASSED, _gate_numbers(gate))

    if status.phase == Phase.PROGRESSING:
        return _progress(status, obs, stable, keep)

    if status.phase == Phase.PROMOTING:
        new_stable = ApplyTrack("stable", spec.model, spec.serving.replicas)
        if obs.stable.is_ready and obs.stable.version == version:
            model = spec.model
            status = _enter(
                status,
                Phase.PROMOTED,
                now,
                stable_model=StableModel(name=model.name, version=version, uri=model.uri),
                stable_version=version,
                canary_version=None,
                canary_weight=0,
                current_step=None,
                history=_history(status, "Promoted", "all checks passed", now),
                message=f"version {version} promoted",
            )
            return Decision(
                status,
                (new_stable, Route(0), DeleteCanary()),
                Event(
                    Reason.PROMOTED,
                    f"version {version} promoted (was {stable.version}); {_gate_numbers(gate)}",
                ),
                _serving_conditions(f"version {version} promoted", gen),
            )
        return Decision(status, (new_stable, keep[1], Route(100)), None, (), POLL_S)

    return Decision(status, keep, None, (), POLL_S)


def _gate_numbers(gate: GateStatus) -> str:
    if gate.stable_accuracy is None or gate.canary_accuracy is None:
        return "no golden-set comparison"
    return (
        f"accuracy {gate.canary_accuracy:.4f} vs stable {gate.stable_accuracy:.4f}, "
        f"drop upper bound {gate.upper_bound or 0:.4f} on {gate.samples} samples"
    )


def _start_progress(
    status: ModelDeploymentStatus, obs: Observations, reason: Reason, message: str
) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    weight = spec.analysis.steps[0]
    status = _enter(
        status,
        Phase.PROGRESSING,
        now,
        current_step=0,
        canary_weight=weight,
        step_started_at=_ts(now),
        message=f"{message}; canary at {weight}%",
    )
    stable = _stable_ref(status)
    assert stable is not None
    return Decision(
        status,
        (
            ApplyTrack("stable", stable, spec.serving.replicas),
            ApplyTrack("canary", spec.model, canary_replicas(spec.serving.replicas, weight)),
            Route(weight),
            BeginAnalysis(),
        ),
        Event(reason, f"{message}; canary weight {weight}%"),
        (_progressing(Reason.STEP_ADVANCED, f"canary at {weight}%", gen, on=True),),
        parse_duration_s(spec.analysis.interval),
    )


def _progress(
    status: ModelDeploymentStatus,
    obs: Observations,
    stable: ModelRef,
    keep: tuple[ApplyTrack, ApplyTrack],
) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    steps = spec.analysis.steps
    step = min(status.current_step or 0, len(steps) - 1)
    weight = steps[step]
    effects: tuple[Effect, ...] = (*keep, Route(weight))
    if obs.command == Command.PROMOTE:
        return _promote(status, obs, "promoted by a user")
    interval_s = parse_duration_s(spec.analysis.interval)
    waited = _age_s(status.step_started_at, now)
    if waited < interval_s:
        return Decision(status, effects, None, (), interval_s - waited)
    if spec.paused:
        return Decision(
            status.model_copy(update={"message": f"paused at {weight}%"}),
            effects,
            None,
            (_progressing(Reason.PAUSED, f"paused at {weight}%", gen, on=True),),
            POLL_S,
        )
    if status.checks_step != step:
        return Decision(status, (*effects, RunAnalysis(step)))
    failed = [c for c in status.checks if not c.passed]
    if failed:
        total = (status.failed_checks or 0) + len(failed)
        limit = spec.analysis.failure_limit
        text = "; ".join(c.message for c in failed)
        if total >= limit:
            return _fail(
                status.model_copy(update={"failed_checks": total}),
                obs,
                Reason.METRIC_CHECK_FAILED,
                f"{text} at {weight}% (failed {total} >= failureLimit {limit})",
            )
        status = status.model_copy(
            update={
                "failed_checks": total,
                "checks_step": None,
                "step_started_at": _ts(now),
                "message": f"{text} (failed {total} < failureLimit {limit}); retrying step",
            }
        )
        return Decision(
            status,
            (*effects, BeginAnalysis()),
            Event(
                Reason.METRIC_CHECK_FAILED,
                f"{text} (failed {total} < failureLimit {limit})",
                warning=True,
            ),
            (),
            interval_s,
        )
    if step + 1 >= len(steps):
        return _promote(status, obs, f"all {len(steps)} steps passed")
    nxt = steps[step + 1]
    status = status.model_copy(
        update={
            "current_step": step + 1,
            "canary_weight": nxt,
            "step_started_at": _ts(now),
            "message": f"canary at {nxt}%",
        }
    )
    checks = ", ".join(c.message for c in status.checks)
    return Decision(
        status,
        (
            keep[0],
            ApplyTrack("canary", spec.model, canary_replicas(spec.serving.replicas, nxt)),
            Route(nxt),
            BeginAnalysis(),
        ),
        Event(Reason.STEP_ADVANCED, f"canary weight {weight}% -> {nxt}% ({checks})"),
        (_progressing(Reason.STEP_ADVANCED, f"canary at {nxt}%", gen, on=True),),
        interval_s,
    )


def _promote(status: ModelDeploymentStatus, obs: Observations, why: str) -> Decision:
    spec, gen = obs.spec, obs.generation
    status = _enter(
        status,
        Phase.PROMOTING,
        obs.now,
        canary_weight=100,
        message=f"promoting {spec.model.version}: {why}",
    )
    return Decision(
        status,
        (ApplyTrack("stable", spec.model, spec.serving.replicas), Route(100)),
        Event(Reason.STEP_ADVANCED, f"promoting {spec.model.version}: {why}"),
        (_progressing(Reason.PROMOTED, f"promoting {spec.model.version}", gen, on=True),),
        POLL_S,
    )


def _fail(
    status: ModelDeploymentStatus,
    obs: Observations,
    reason: Reason,
    message: str,
    *,
    automatic: bool | None = None,
) -> Decision:
    """A check failed: roll back (or pause for a human when rollback is not automatic)."""
    spec, gen = obs.spec, obs.generation
    stable = _stable_ref(status)
    assert stable is not None
    version = status.canary_version or spec.model.version
    auto = spec.rollback.automatic if automatic is None else automatic
    if not auto:
        status = _enter(status, Phase.PAUSED, obs.now, message=f"{message}; paused for a human")
        return Decision(
            status,
            (ApplyTrack("stable", stable, spec.serving.replicas), Route(0)),
            Event(
                reason,
                f"{message}; rollback.automatic is false: canary {version} paused "
                "with no traffic, run `kubectl tensorgate abort` or `promote`",
                warning=True,
            ),
            (
                _degraded(reason, message, gen, on=True),
                _progressing(Reason.PAUSED, message, gen, on=False),
            ),
            POLL_S,
        )
    status = _enter(
        status,
        Phase.ROLLED_BACK,
        obs.now,
        canary_weight=0,
        current_step=None,
        history=_history(status, "RolledBack", f"{reason}: {message}", obs.now),
        message=f"rolled back {version}: {message}",
    )
    return Decision(
        status,
        (ApplyTrack("stable", stable, spec.serving.replicas), Route(0), DeleteCanary()),
        Event(reason, f"rolled back {version} to {stable.version}: {message}", warning=True),
        (
            _ready(Reason.AVAILABLE, f"stable {stable.version} serving", gen, ok=True),
            _progressing(Reason.ROLLED_BACK, f"rolled back {version}: {message}", gen, on=False),
            _degraded(reason, message, gen, on=True),
        ),
    )


def _after_rollback(status: ModelDeploymentStatus, obs: Observations, stable: ModelRef) -> Decision:
    """Stay rolled back until the spec names another model; keep stable healthy."""
    spec = obs.spec
    return Decision(
        status,
        (ApplyTrack("stable", stable, spec.serving.replicas), Route(0), DeleteCanary()),
    )


def _end_rollout(
    status: ModelDeploymentStatus,
    obs: Observations,
    phase: Phase,
    decision: str,
    reason: Reason,
    message: str,
    *,
    restart: bool = False,
) -> Decision:
    status = _enter(
        status,
        phase,
        obs.now,
        canary_version=None,
        canary_weight=0,
        current_step=None,
        history=_history(status, decision, message, obs.now),
        message=message,
    )
    stable = _stable_ref(status)
    assert stable is not None
    effects: tuple[Effect, ...] = (
        ApplyTrack("stable", stable, obs.spec.serving.replicas),
        Route(0),
        DeleteCanary(),
    )
    if restart:
        follow = _start_rollout(status, obs)
        return Decision(
            follow.status,
            effects + follow.effects,
            Event(reason, f"{message}; {follow.event.message if follow.event else ''}"),
            follow.conditions,
            POLL_S,
        )
    return Decision(status, effects, Event(reason, message), (), POLL_S)


def record_check_results(
    status: ModelDeploymentStatus, step: int, results: list[CheckResult]
) -> ModelDeploymentStatus:
    """Store a step's metric check results (what RunAnalysis's executor calls)."""
    return status.model_copy(update={"checks": results, "checks_step": step})
