"""The rollout state machine: ``decide(status, observations) -> Decision``. Pure: no I/O, no clock.

The state is the resource's status (so a restarted operator resumes exactly where it stopped);
the observations are what the edges saw (the spec and its revision, the tracks, the time, a
command). Each call is ONE decision: the executor writes its status before the next one, so
every phase reaches status, Events, the ledger and the gauges. Results of slow checks (smoke,
golden set, metrics) come back as status fields: a phase is entered by one decision, its check
is run by the next (``Run*`` effect), and the decision after that judges the outcome.

    (no stable) Deploying -> Promoted
    (new revision) Deploying -> SmokeTesting -> Evaluating -> Progressing (steps) -> Promoting
                -> Promoted;  any failed check or deadline -> RolledBack (or Paused when not
                automatic);  a new revision in flight -> Superseded, then gated from the start

``PHASE_STEPS`` maps each in-flight phase to the function that advances it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from tensorgate.api.reasons import ConditionType, Phase, Reason
from tensorgate.api.spec import ModelRef, WebhookType, parse_duration_s
from tensorgate.api.status import (
    CheckResult,
    CommandStatus,
    GateStatus,
    HistoryEntry,
    ModelDeploymentStatus,
    StableModel,
)
from tensorgate.engine.conditions import ConditionChange
from tensorgate.engine.effects import (
    RUN_EFFECTS,
    ApplyTrack,
    BeginAnalysis,
    Command,
    CommandRequest,
    Decision,
    DeleteCanary,
    Effect,
    Event,
    Observations,
    Route,
    RunAnalysis,
    RunComparison,
    RunHooks,
    RunSmoke,
)
from tensorgate.engine.golden_size import golden_set_shortfall
from tensorgate.engine.hooks import (
    HookVerdict,
    hook_run,
    is_awaiting_confirmation,
    judge_hooks,
    with_notifications,
)
from tensorgate.engine.replicas import TrackObservation, shift, split
from tensorgate.engine.revision import model_key

__all__ = [
    "IN_FLIGHT",
    "PHASE_STEPS",
    "POLL_S",
    "RUN_EFFECTS",
    "ApplyTrack",
    "BeginAnalysis",
    "Command",
    "CommandRequest",
    "Decision",
    "DeleteCanary",
    "Effect",
    "Event",
    "Observations",
    "Route",
    "RunAnalysis",
    "RunComparison",
    "RunSmoke",
    "TrackObservation",
    "decide",
    "record_check_results",
]

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
# Commands that act in each phase; any other phase answers with a CommandIgnored Event.
COMMAND_PHASES: dict[str, set[Phase]] = {
    Command.ABORT: IN_FLIGHT,
    Command.PROMOTE: {Phase.PROGRESSING, Phase.PAUSED},
    Command.RETRY: {Phase.ROLLED_BACK},
}


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


def _stable_revision(status: ModelDeploymentStatus, obs: Observations) -> str:
    """The stable track's revision; a status written before revisions existed adopts the
    spec's revision when it names the same model."""
    stable = status.stable_model
    assert stable is not None
    if stable.revision:
        return stable.revision
    ref = _stable_ref(status)
    return obs.revision if _same_model(ref, obs.spec.model) else model_key(ref)  # type: ignore[arg-type]


def _canary_revision(status: ModelDeploymentStatus, obs: Observations) -> str | None:
    if status.canary_revision:
        return status.canary_revision
    if status.canary_version is not None and status.canary_version == obs.spec.model.version:
        return obs.revision  # written before revisions existed
    return None


def _track_at(track: TrackObservation, revision: str, version: str) -> bool:
    """The track runs ``revision`` (platforms that keep no revision report the version)."""
    if track.revision is not None:
        return track.revision == revision
    return track.version == version


def _ready(reason: Reason, message: str, gen: int, *, ok: bool) -> ConditionChange:
    return ConditionChange(ConditionType.READY, ok, reason, message, gen)


def _progressing(reason: Reason, message: str, gen: int, *, on: bool) -> ConditionChange:
    return ConditionChange(ConditionType.PROGRESSING, on, reason, message, gen)


def _degraded(reason: Reason, message: str, gen: int, *, on: bool) -> ConditionChange:
    return ConditionChange(ConditionType.DEGRADED, on, reason, message, gen)


def _gate_warning(gate: GateStatus, gen: int) -> ConditionChange:
    """``GateWarning`` from a judged gate: True (``WeakVerdict``) with its warnings (a stable
    model near chance, a golden set too small to ever promote, a slice regression reported
    only), False once a gate has none (smoke-only gates included)."""
    if gate.warnings:
        message = "; ".join(gate.warnings)
        return ConditionChange(ConditionType.GATE_WARNING, True, Reason.WEAK_VERDICT, message, gen)
    of = f"revision {gate.revision}" if gate.revision else f"version {gate.version}"
    message = f"gate of {of}: no warnings"
    return ConditionChange(ConditionType.GATE_WARNING, False, Reason.NO_WARNINGS, message, gen)


def _judged(decision: Decision, gate: GateStatus, gen: int) -> Decision:
    """``decision`` with the ``GateWarning`` condition of the gate it judged."""
    return replace(decision, conditions=(*decision.conditions, _gate_warning(gate, gen)))


def _history(
    status: ModelDeploymentStatus, decision: str, reason: str, now: datetime
) -> list[HistoryEntry]:
    gate = status.gate
    entry = HistoryEntry(
        version=status.canary_version or "",
        revision=status.canary_revision,
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
    update: dict[str, object] = {
        "phase": phase,
        "phase_started_at": _ts(now),
        "edge_errors": None,
        **changes,
    }
    return status.model_copy(update=update)


def _gate_current(status: ModelDeploymentStatus, revision: str) -> GateStatus:
    """The gate result of this revision (a result of another revision is not evidence)."""
    gate = status.gate
    if gate is None or (gate.revision is not None and gate.revision != revision):
        return GateStatus(version=status.canary_version, revision=revision)
    return gate


# --- the decision ------------------------------------------------------------------------


def decide(status: ModelDeploymentStatus, obs: Observations) -> Decision:
    """The one next decision (with what it means for the listening webhooks)."""
    return with_notifications(status, obs.spec, _decide(status, obs))


def _decide(status: ModelDeploymentStatus, obs: Observations) -> Decision:
    spec, gen = obs.spec, obs.generation
    status = status.model_copy(update={"observed_generation": gen, "revision": obs.revision})
    command = obs.command
    if command is not None and (
        status.last_command is None or status.last_command.id != command.id
    ):
        return _command(status, obs, command)

    stable = _stable_ref(status)
    if stable is None:
        return _first_deploy(status, obs)
    stable_rev = _stable_revision(status, obs)
    canary_rev = _canary_revision(status, obs)
    in_flight = status.phase in IN_FLIGHT and status.canary_version is not None

    if stable_rev == obs.revision:
        if in_flight:
            # The spec went back to the stable revision during a rollout: drop the canary.
            return _end_rollout(
                status,
                obs,
                "Superseded",
                f"rollout of {status.canary_version} (revision {canary_rev}) "
                f"superseded: spec is back at stable {stable.version} (revision {stable_rev})",
            )
        return _steady(status, obs, stable, stable_rev)

    if in_flight and canary_rev != obs.revision:
        return _end_rollout(
            status,
            obs,
            "Superseded",
            f"rollout of {status.canary_version} (revision {canary_rev}) superseded by "
            f"{spec.model.version} (revision {obs.revision})",
            restart=True,
        )
    if status.phase in {Phase.ROLLED_BACK, Phase.FAILED} and canary_rev == obs.revision:
        return _after_rollback(status, obs, stable, stable_rev)
    if status.phase not in IN_FLIGHT or canary_rev != obs.revision:
        return _start_rollout(status, obs, stable, stable_rev)
    assert status.phase is not None
    return PHASE_STEPS[status.phase](status, obs, stable, stable_rev)


def _command(status: ModelDeploymentStatus, obs: Observations, command: CommandRequest) -> Decision:
    """Apply a command once (``status.lastCommand`` keeps its id), or say why it does not apply."""
    phase = status.phase or Phase.PENDING
    name = command.name.strip().lower()

    def ack(result: str, message: str) -> ModelDeploymentStatus:
        done = CommandStatus(
            id=command.id, name=name, result=result, message=message, at=_ts(obs.now)
        )
        return status.model_copy(update={"last_command": done})

    if name not in COMMAND_PHASES:
        why = f"unknown command {command.name!r} (expected one of {', '.join(COMMAND_PHASES)})"
        return Decision(ack("Ignored", why), (), Event(Reason.COMMAND_IGNORED, why, True), (), 0)
    if phase not in COMMAND_PHASES[name] or status.stable_model is None:
        allowed = ", ".join(sorted(COMMAND_PHASES[name]))
        why = f"command {name} does not apply in phase {phase} (it applies in: {allowed})"
        return Decision(ack("Ignored", why), (), Event(Reason.COMMAND_IGNORED, why, True), (), 0)
    status = ack("Applied", f"{name} applied in phase {phase}")
    stable = _stable_ref(status)
    assert stable is not None
    stable_rev = _stable_revision(status, obs)
    if name == Command.ABORT:
        return _fail(
            status, obs, Reason.ABORTED, f"rollout aborted by a user in {phase}", automatic=True
        )
    if name == Command.PROMOTE:
        return _promote(status, obs, f"promoted by a user from {phase}")
    return _start_rollout(status, obs, stable, stable_rev, why="retried by a user")


def _first_deploy(status: ModelDeploymentStatus, obs: Observations) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    model = spec.model
    apply = ApplyTrack("stable", model, spec.serving.replicas, obs.revision)
    if status.phase != Phase.DEPLOYING:
        # The phase is written first, the (slow) objects are created by the next decision:
        # 1,000 new objects all get a phase as fast as their status writes go.
        status = _enter(status, Phase.DEPLOYING, now, message=f"deploying {model.version}")
        return Decision(
            status,
            (),
            Event(Reason.DEPLOYING, f"deploying version {model.version}"),
            (
                _ready(Reason.DEPLOYING, f"waiting for version {model.version}", gen, ok=False),
                _progressing(Reason.DEPLOYING, f"deploying version {model.version}", gen, on=True),
            ),
            0,
        )
    if obs.stable.is_ready and _track_at(obs.stable, obs.revision, model.version):
        status = _enter(
            status,
            Phase.PROMOTED,
            now,
            stable_model=StableModel(
                name=model.name, version=model.version, uri=model.uri, revision=obs.revision
            ),
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
    return _wait_ready(status, obs, obs.stable, "stable", (apply, Route(0)))


def _wait_ready(
    status: ModelDeploymentStatus,
    obs: Observations,
    track: TrackObservation,
    name: str,
    effects: tuple[Effect, ...],
) -> Decision:
    gen = obs.generation
    timeout_s = parse_duration_s(obs.spec.analysis.readiness_timeout)
    waited = _age_s(status.phase_started_at, obs.now)
    progress = f"{track.ready}/{track.desired or 1} {name} pod(s) ready"
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
    return Decision(status, effects, None, changes, POLL_S)


def _serving_conditions(message: str, gen: int) -> tuple[ConditionChange, ...]:
    return (
        _ready(Reason.AVAILABLE, message, gen, ok=True),
        _progressing(Reason.AVAILABLE, message, gen, on=False),
        _degraded(Reason.AVAILABLE, message, gen, on=False),
    )


def _steady(
    status: ModelDeploymentStatus, obs: Observations, stable: ModelRef, stable_rev: str
) -> Decision:
    """No rollout: keep the stable track as the spec says (replicas). Idle when Ready."""
    spec, gen = obs.spec, obs.generation
    if status.stable_model is not None and status.stable_model.revision != stable_rev:
        model = status.stable_model.model_copy(update={"revision": stable_rev})
        status = status.model_copy(update={"stable_model": model})
    apply = ApplyTrack("stable", stable, spec.serving.replicas, stable_rev)
    effects: tuple[Effect, ...] = (apply, Route(0))
    if obs.canary.exists:
        effects = (*effects, DeleteCanary())
    if status.phase != Phase.PROMOTED:
        # No rollout, or the spec went back to the stable revision after a rollback (a revert
        # in Git): the object is what its spec says.
        status = _enter(status, Phase.PROMOTED, obs.now)
    if obs.stable.is_ready and obs.stable.desired == spec.serving.replicas:
        message = f"version {stable.version} serving on {obs.stable.ready} pod(s)"
        conds: tuple[ConditionChange, ...] = (
            _ready(Reason.AVAILABLE, message, gen, ok=True),
            _progressing(Reason.AVAILABLE, message, gen, on=False),
            _degraded(Reason.AVAILABLE, message, gen, on=False),
        )
        return Decision(status.model_copy(update={"message": message}), effects, None, conds)
    message = f"stable version {stable.version}: {obs.stable.ready}/{spec.serving.replicas} ready"
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


def _start_rollout(
    status: ModelDeploymentStatus,
    obs: Observations,
    stable: ModelRef,
    stable_rev: str,
    *,
    why: str = "",
) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    version = spec.model.version
    status = _enter(
        status,
        Phase.DEPLOYING,
        now,
        canary_version=version,
        canary_revision=obs.revision,
        canary_weight=0,
        current_step=None,
        failed_checks=0,
        step_started_at=None,
        gate=GateStatus(version=version, revision=obs.revision),
        checks=[],
        checks_step=None,
        hooks=[],
        rollout_id=f"{version}-{obs.revision}-{_ts(now)}",
        message=f"starting canary {version} revision {obs.revision} (stable {stable.version})",
    )
    too_small = golden_set_shortfall(spec, obs.golden_rows)
    if too_small is not None:  # the gate could only roll back: fail before any pod starts
        return _fail(status, obs, Reason.GOLDEN_SET_TOO_SMALL, too_small, automatic=True)
    plan = shift(
        spec.serving.replicas,
        spec.serving.max_surge,
        obs.stable,
        TrackObservation(),
        1,
        want_stable=spec.serving.replicas,
    )
    prefix = f"{why}: " if why else ""
    return Decision(
        status,
        (
            ApplyTrack("stable", stable, max(plan.stable, 1), stable_rev),
            ApplyTrack("canary", spec.model, plan.canary, obs.revision),
            Route(0),
        ),
        Event(
            Reason.RETRYING if why else Reason.DEPLOYING,
            f"{prefix}rollout of {version} (revision {obs.revision}) started "
            f"(stable {stable.version}); canary receives no traffic until it passes smoke and "
            "golden-set checks",
        ),
        (_progressing(Reason.DEPLOYING, f"deploying canary {version}", gen, on=True),),
        POLL_S,
    )


def _tracks(
    status: ModelDeploymentStatus,
    obs: Observations,
    stable: ModelRef,
    stable_rev: str,
    want_canary: int,
    *,
    want_stable: int | None = None,
) -> tuple[ApplyTrack, ApplyTrack]:
    """Both tracks one move closer to ``want_canary`` canary pods, inside the GPU budget."""
    spec = obs.spec
    plan = shift(
        spec.serving.replicas,
        spec.serving.max_surge,
        obs.stable,
        obs.canary,
        want_canary,
        want_stable=want_stable,
    )
    return (
        ApplyTrack("stable", stable, plan.stable, stable_rev),
        ApplyTrack("canary", spec.model, plan.canary, obs.revision),
    )


def _limits(status: ModelDeploymentStatus, obs: Observations) -> Decision | None:
    """The phase's deadline and the consecutive edge-error limit; None while within both."""
    spec = obs.spec
    phase = status.phase
    errors, limit = status.edge_errors or 0, spec.analysis.max_edge_errors
    if errors >= limit:
        return _fail(
            status,
            obs,
            Reason.EDGE_ERROR_LIMIT,
            f"{errors} consecutive checks could not run in {phase} (>= maxEdgeErrors {limit}); "
            f"last: {status.message}",
        )
    deadline_s = parse_duration_s(spec.analysis.progress_deadline)
    if is_awaiting_confirmation(spec, status):
        return None  # a manual gate: no deadline runs out while promotion waits for it
    if phase == Phase.PROGRESSING:
        waited = _age_s(status.step_started_at, obs.now) - parse_duration_s(spec.analysis.interval)
    else:
        waited = _age_s(status.phase_started_at, obs.now)
    if waited > deadline_s:
        return _fail(
            status,
            obs,
            Reason.PROGRESS_DEADLINE_EXCEEDED,
            f"{phase} took {waited:.0f}s > progressDeadline {deadline_s:.0f}s"
            + (f" ({status.message})" if status.message else ""),
        )
    return None


def _deploying(
    status: ModelDeploymentStatus, obs: Observations, stable: ModelRef, stable_rev: str
) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    version = spec.model.version
    keep = _tracks(status, obs, stable, stable_rev, 1, want_stable=spec.serving.replicas)
    if obs.canary.is_ready and _track_at(obs.canary, obs.revision, version):
        status = _enter(status, Phase.SMOKE_TESTING, now, message=f"smoke-testing canary {version}")
        return Decision(
            status,
            (*keep, Route(0)),
            Event(Reason.SMOKE_TESTING, f"canary {version} ready; smoke testing"),
            (_progressing(Reason.SMOKE_TESTING, f"smoke-testing {version}", gen, on=True),),
            0,
        )
    return _wait_ready(status, obs, obs.canary, "canary", (*keep, Route(0)))


def _smoke_testing(
    status: ModelDeploymentStatus, obs: Observations, stable: ModelRef, stable_rev: str
) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    version = spec.model.version
    keep = _tracks(status, obs, stable, stable_rev, 1, want_stable=spec.serving.replicas)
    gate = _gate_current(status, obs.revision)
    if gate.smoke_passed is None:
        return _limits(status, obs) or Decision(status, (*keep, RunSmoke("canary")), None, (), 0)
    if not gate.smoke_passed:
        failed = "; ".join(c.message for c in gate.smoke if not c.passed) or "smoke failed"
        return _judged(_fail(status, obs, Reason.SMOKE_TEST_FAILED, failed), gate, gen)
    if spec.golden_set is None:
        started = _start_progress(
            status,
            obs,
            stable_rev,
            Reason.SMOKE_TEST_PASSED,
            f"smoke passed ({len(gate.smoke)} checks); no golden set",
        )
        return _judged(started, gate, gen)
    status = _enter(
        status,
        Phase.EVALUATING,
        now,
        message=f"scoring golden set on stable {stable.version} and {version}",
    )
    return Decision(
        status,
        keep,
        Event(
            Reason.SMOKE_TEST_PASSED,
            f"smoke passed ({len(gate.smoke)} checks); scoring golden set",
        ),
        (_progressing(Reason.EVALUATING, "scoring golden set", gen, on=True),),
        0,
    )


def _evaluating(
    status: ModelDeploymentStatus, obs: Observations, stable: ModelRef, stable_rev: str
) -> Decision:
    keep = _tracks(status, obs, stable, stable_rev, 1, want_stable=obs.spec.serving.replicas)
    gate = _gate_current(status, obs.revision)
    if not gate.compared:
        return _limits(status, obs) or Decision(status, (*keep, RunComparison()), None, (), 0)
    gen = obs.generation
    if gate.decision != "promote":
        failed = _fail(
            status,
            obs,
            Reason.ACCURACY_GATE_FAILED,
            "; ".join(gate.reasons) or "accuracy gate failed",
        )
        return _judged(failed, gate, gen)
    passed = _judged(
        _start_progress(status, obs, stable_rev, Reason.ACCURACY_GATE_PASSED, _gate_numbers(gate)),
        gate,
        gen,
    )
    if gate.warnings and passed.event is not None:
        # A gate that passed with warnings (a stable model near chance, a golden set that
        # could hardly ever promote) says so where people look: a Warning Event, and the
        # GateWarning condition (set above) that stays until a gate without warnings.
        warned = Event(
            Reason.ACCURACY_GATE_PASSED,
            f"{passed.event.message}; warnings: {'; '.join(gate.warnings)}",
            warning=True,
        )
        return replace(passed, event=warned)
    return passed


def _paused(
    status: ModelDeploymentStatus, obs: Observations, stable: ModelRef, stable_rev: str
) -> Decision:
    """A failed check with rollback.automatic false: stable serves everything, the canary
    keeps one pod for a human (``promote`` or ``abort``)."""
    keep = _tracks(status, obs, stable, stable_rev, 1, want_stable=obs.spec.serving.replicas)
    return Decision(status, (*keep, Route(0)), None, (), None)


def _gate_numbers(gate: GateStatus) -> str:
    if gate.stable_accuracy is None or gate.canary_accuracy is None:
        return "no golden-set comparison"
    return (
        f"accuracy {gate.canary_accuracy:.4f} vs stable {gate.stable_accuracy:.4f}, "
        f"drop upper bound {gate.upper_bound or 0:.4f} on {gate.samples} samples"
    )


def _weight(obs: Observations, step_weight: int) -> int:
    """The weight users get: the HTTPRoute's with gateway-api, the pods' share with replicas."""
    if str(obs.spec.traffic.router) != "replicas":
        return step_weight
    return split(obs.spec.serving.replicas, step_weight).canary_percent


def _step_tracks(
    status: ModelDeploymentStatus,
    obs: Observations,
    stable: ModelRef,
    stable_rev: str,
    step_weight: int,
) -> tuple[ApplyTrack, ApplyTrack, Route]:
    """Both tracks one move closer to the step's pods, and the route for it. At 100% the
    stable pods keep serving until the canary has taken every pod."""
    want = split(obs.spec.serving.replicas, step_weight)
    keep = _tracks(status, obs, stable, stable_rev, want.canary, want_stable=want.stable)
    weight = _weight(obs, step_weight)
    if weight >= 100 and (obs.stable.desired > 0 or obs.stable.pods > 0):
        weight = 99
    return (*keep, Route(weight))


def _start_progress(
    status: ModelDeploymentStatus,
    obs: Observations,
    stable_rev: str,
    reason: Reason,
    message: str,
) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    hooks = _pre_rollout(status, obs, stable_rev)
    if hooks is not None:
        return hooks
    step_weight = spec.analysis.steps[0]
    weight = _weight(obs, step_weight)
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
        (*_step_tracks(status, obs, stable, stable_rev, step_weight), BeginAnalysis()),
        Event(reason, f"{message}; canary weight {weight}%"),
        (_progressing(Reason.STEP_ADVANCED, f"canary at {weight}%", gen, on=True),),
        0,
    )


def _progressing_step(
    status: ModelDeploymentStatus, obs: Observations, stable: ModelRef, stable_rev: str
) -> Decision:
    spec, gen, now = obs.spec, obs.generation, obs.now
    steps = spec.analysis.steps
    step = min(status.current_step or 0, len(steps) - 1)
    step_weight = steps[step]
    effects: tuple[Effect, ...] = _step_tracks(status, obs, stable, stable_rev, step_weight)
    want = split(spec.serving.replicas, step_weight)
    settled = obs.canary.ready >= want.canary and obs.stable.desired <= want.stable
    if str(spec.traffic.router) == "replicas" and (obs.canary.ready or obs.stable.ready):
        # What users get right now: the canary's share of Ready pods (moving to the step's).
        status = status.model_copy(update={"canary_weight": _share(obs)})
    interval_s = parse_duration_s(spec.analysis.interval)
    waited = _age_s(status.step_started_at, now)
    if waited < interval_s:  # pods still moving are looked at again soon
        wait_s = max(0.5, interval_s - waited)
        return Decision(status, effects, None, (), wait_s if settled else min(POLL_S, wait_s))
    if spec.paused:
        return Decision(
            status.model_copy(update={"message": f"paused at {status.canary_weight}%"}),
            effects,
            None,
            (_progressing(Reason.PAUSED, f"paused at {status.canary_weight}%", gen, on=True),),
            None,
        )
    if not settled:  # a step is judged at its weight, not on the way to it
        limited = _limits(status, obs)
        moving = (
            f"canary at {status.canary_weight}% on the way to {_weight(obs, step_weight)}%: "
            f"{obs.canary.ready}/{want.canary} canary pod(s) ready"
        )
        return limited or Decision(
            status.model_copy(update={"message": moving}), effects, None, (), POLL_S
        )
    limited = _limits(status, obs)
    if limited is not None:
        return limited
    if status.checks_step != step:
        return Decision(
            status, (*effects, RunAnalysis(step), *_rollback_hooks(obs, step)), None, (), 0
        )
    weight = status.canary_weight or 0
    asked = judge_hooks(spec, status, WebhookType.ROLLBACK, now, step=step)
    if asked.verdict == HookVerdict.FAILED:
        return _fail(status, obs, Reason.WEBHOOK_ROLLBACK, f"{asked.message} at {weight}%")
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
        return _confirm_promotion(status, obs, effects, f"all {len(steps)} steps passed")
    nxt_step = steps[step + 1]
    nxt = _weight(obs, nxt_step)
    status = status.model_copy(
        update={
            "current_step": step + 1,
            "canary_weight": nxt,
            "step_started_at": _ts(now),
            "edge_errors": None,
            "message": f"canary at {nxt}%",
        }
    )
    checks = ", ".join(c.message for c in status.checks)
    return Decision(
        status,
        (*_step_tracks(status, obs, stable, stable_rev, nxt_step), BeginAnalysis()),
        Event(Reason.STEP_ADVANCED, f"canary weight {weight}% -> {nxt}% ({checks})"),
        (_progressing(Reason.STEP_ADVANCED, f"canary at {nxt}%", gen, on=True),),
        interval_s,
    )


def _rollback_hooks(obs: Observations, step: int) -> tuple[Effect, ...]:
    """Rollback webhooks are asked with every analysis of a step."""
    return (
        (RunHooks(WebhookType.ROLLBACK, step),)
        if obs.spec.analysis.hooks_of(WebhookType.ROLLBACK)
        else ()
    )


def _pre_rollout(
    status: ModelDeploymentStatus, obs: Observations, stable_rev: str
) -> Decision | None:
    """Before the canary's first traffic step: call the pre-rollout webhooks, then judge them
    (a refusal is a failed check). None when there are none or all answered 2xx."""
    spec = obs.spec
    judged = judge_hooks(spec, status, WebhookType.PRE_ROLLOUT, obs.now)
    if judged.verdict == HookVerdict.FAILED:
        return _fail(status, obs, Reason.WEBHOOK_FAILED, judged.message)
    if judged.verdict != HookVerdict.RUN:
        return None
    stable = _stable_ref(status)
    assert stable is not None
    keep = _tracks(status, obs, stable, stable_rev, 1, want_stable=spec.serving.replicas)
    calling = status.model_copy(update={"message": judged.message})
    return _limits(status, obs) or Decision(
        calling, (*keep, Route(0), RunHooks(WebhookType.PRE_ROLLOUT)), None, (), 0
    )


def _confirm_promotion(
    status: ModelDeploymentStatus, obs: Observations, effects: tuple[Effect, ...], why: str
) -> Decision:
    """After the last step: promote, or wait for the confirm-promotion webhooks to answer 2xx.
    They are asked again once per analysis interval, and with them the rollback webhooks and
    the metric checks (a window per interval): the canary keeps its traffic while it waits,
    so a regression meanwhile still rolls back."""
    spec, gen = obs.spec, obs.generation
    interval_s = parse_duration_s(spec.analysis.interval)
    kind = WebhookType.CONFIRM_PROMOTION
    judged = judge_hooks(spec, status, kind, obs.now, every_s=interval_s)
    if judged.verdict in {HookVerdict.NONE, HookVerdict.PASSED}:
        return _promote(status, obs, f"{why}; {judged.message}" if judged.message else why)
    first = hook_run(status, kind) is None
    message = judged.message
    if first:
        names = ", ".join(h.name for h in spec.analysis.hooks_of(kind))
        message = f"promotion waits for confirm-promotion webhook {names}"
    waiting = status.model_copy(update={"message": message})
    condition = (_progressing(Reason.WAITING_FOR_CONFIRMATION, message, gen, on=True),)
    if judged.verdict == HookVerdict.WAIT:
        return Decision(waiting, effects, None, condition, judged.wait_s)
    if first:  # the metric checks and rollback webhooks ran with this step's analysis
        event = Event(Reason.WAITING_FOR_CONFIRMATION, f"{why}; {message}")
        return Decision(waiting, (*effects, RunHooks(kind), BeginAnalysis()), event, condition, 0)
    step = status.current_step or 0
    again = (RunAnalysis(step), *_rollback_hooks(obs, step), RunHooks(kind), BeginAnalysis())
    return Decision(waiting, (*effects, *again), None, condition, 0)


def _promote(status: ModelDeploymentStatus, obs: Observations, why: str) -> Decision:
    gen = obs.generation
    version = obs.spec.model.version
    status = _enter(status, Phase.PROMOTING, obs.now, message=f"promoting {version}: {why}")
    return Decision(
        status,
        (),
        Event(Reason.STEP_ADVANCED, f"promoting {version}: {why}"),
        (_progressing(Reason.PROMOTED, f"promoting {version}", gen, on=True),),
        0,
    )


def _promoting(
    status: ModelDeploymentStatus, obs: Observations, stable: ModelRef, stable_rev: str
) -> Decision:
    """Move serving onto the new revision within ``replicas + maxSurge`` pods: first every
    pod to the canary, then the stable Deployment (at zero pods) to the new revision, then the
    pods back to the stable track, then the canary away."""
    spec, gen, now = obs.spec, obs.generation, obs.now
    total = spec.serving.replicas
    version = spec.model.version
    limited = _limits(status, obs)
    if limited is not None:
        return limited
    new_stable_rev = obs.revision
    if not _track_at(obs.stable, new_stable_rev, version) or not obs.stable.exists:
        if obs.stable.desired > 0 or obs.stable.pods > 0:
            keep = _tracks(status, obs, stable, stable_rev, total)
            share = 100 if obs.stable.ready == 0 else 99
            return Decision(
                status.model_copy(update={"canary_weight": _share(obs)}),
                (*keep, Route(share)),
                None,
                (),
                POLL_S,
            )
        return Decision(
            status.model_copy(update={"canary_weight": 100}),
            (
                ApplyTrack("stable", spec.model, 0, new_stable_rev),
                ApplyTrack("canary", spec.model, max(obs.canary.desired, 1), new_stable_rev),
                Route(100),
            ),
            None,
            (),
            POLL_S,
        )
    if obs.stable.is_ready and obs.stable.desired >= total:
        model = spec.model
        status = _enter(
            status,
            Phase.PROMOTED,
            now,
            stable_model=StableModel(
                name=model.name, version=version, uri=model.uri, revision=new_stable_rev
            ),
            stable_version=version,
            canary_version=None,
            canary_revision=None,
            canary_weight=0,
            current_step=None,
            history=_history(status, "Promoted", "all checks passed", now),
            message=f"version {version} promoted",
        )
        return Decision(
            status,
            (ApplyTrack("stable", model, total, new_stable_rev), Route(0), DeleteCanary()),
            Event(
                Reason.PROMOTED,
                f"version {version} promoted (was {stable.version}); "
                f"{_gate_numbers(status.gate or GateStatus())}",
            ),
            _serving_conditions(f"version {version} promoted", gen),
        )
    keep = _tracks(status, obs, spec.model, new_stable_rev, 0, want_stable=total)
    return Decision(
        status.model_copy(update={"canary_weight": _share(obs)}),
        (*keep, Route(max(1, min(99, _share(obs))))),
        None,
        (),
        POLL_S,
    )


def _share(obs: Observations) -> int:
    """The canary's share of Ready serving pods, in percent."""
    ready = obs.stable.ready + obs.canary.ready
    return round(100 * obs.canary.ready / ready) if ready else 0


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
    stable_rev = _stable_revision(status, obs)
    version = status.canary_version or spec.model.version
    auto = spec.rollback.automatic if automatic is None else automatic
    total = spec.serving.replicas
    if not auto:
        status = _enter(
            status,
            Phase.PAUSED,
            obs.now,
            canary_weight=0,
            message=f"{message}; paused for a human",
        )
        keep = _tracks(status, obs, stable, stable_rev, 1, want_stable=total)
        return Decision(
            status,
            (*keep, Route(0)),
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
        (ApplyTrack("stable", stable, total, stable_rev), Route(0), DeleteCanary()),
        Event(reason, f"rolled back {version} to {stable.version}: {message}", warning=True),
        (
            _ready(Reason.AVAILABLE, f"stable {stable.version} serving", gen, ok=True),
            _progressing(Reason.ROLLED_BACK, f"rolled back {version}: {message}", gen, on=False),
            _degraded(reason, message, gen, on=True),
        ),
        POLL_S,
    )


def _after_rollback(
    status: ModelDeploymentStatus, obs: Observations, stable: ModelRef, stable_rev: str
) -> Decision:
    """Stay rolled back until the spec names another revision (or a user runs ``retry``)."""
    spec = obs.spec
    effects: tuple[Effect, ...] = (
        ApplyTrack("stable", stable, spec.serving.replicas, stable_rev),
        Route(0),
    )
    if obs.canary.exists:
        effects = (*effects, DeleteCanary())
    ready = obs.stable.is_ready and obs.stable.desired == spec.serving.replicas
    return Decision(status, effects, None, (), None if ready else POLL_S)


def _end_rollout(
    status: ModelDeploymentStatus,
    obs: Observations,
    decision: str,
    message: str,
    *,
    restart: bool = False,
) -> Decision:
    status = _enter(
        status,
        Phase.PROMOTED,
        obs.now,
        canary_version=None,
        canary_revision=None,
        canary_weight=0,
        current_step=None,
        history=_history(status, decision, message, obs.now),
        message=message,
    )
    stable = _stable_ref(status)
    assert stable is not None
    stable_rev = _stable_revision(status, obs)
    effects: tuple[Effect, ...] = (
        ApplyTrack("stable", stable, obs.spec.serving.replicas, stable_rev),
        Route(0),
        DeleteCanary(),
    )
    if restart:
        # The old canary is deleted first, then created again at the new revision.
        follow = _start_rollout(status, obs, stable, stable_rev)
        return Decision(
            follow.status,
            effects + follow.effects[1:],
            Event(
                Reason.SUPERSEDED,
                f"{message}; {follow.event.message if follow.event else ''}",
                warning=follow.event is not None and follow.event.warning,
            ),
            follow.conditions,
            POLL_S,
        )
    return Decision(status, effects, Event(Reason.SUPERSEDED, message), (), POLL_S)


StepFn = Callable[[ModelDeploymentStatus, Observations, ModelRef, str], Decision]

PHASE_STEPS: dict[Phase, StepFn] = {
    Phase.DEPLOYING: _deploying,
    Phase.SMOKE_TESTING: _smoke_testing,
    Phase.EVALUATING: _evaluating,
    Phase.PROGRESSING: _progressing_step,
    Phase.PROMOTING: _promoting,
    Phase.PAUSED: _paused,
}


def kstatus_conditions(
    status: ModelDeploymentStatus, revision: str | None, gen: int
) -> tuple[ConditionChange, ...]:
    """Flux's kstatus conditions from the phase: ``Reconciling`` while a rollout is moving,
    ``Stalled`` when only a person (or a new spec) can move it: Paused, Failed, or RolledBack
    while the spec still names the rejected revision."""
    phase = status.phase
    moving = phase in IN_FLIGHT and phase != Phase.PAUSED
    rejected = phase == Phase.ROLLED_BACK and revision is not None
    rejected = rejected and status.canary_revision == revision
    stalled = phase in {Phase.PAUSED, Phase.FAILED} or rejected
    message = status.message or str(phase or "")
    return (
        ConditionChange(
            ConditionType.RECONCILING,
            moving,
            Reason.ROLLOUT_IN_FLIGHT if moving else Reason.IDLE,
            message,
            gen,
        ),
        ConditionChange(
            ConditionType.STALLED,
            stalled,
            Reason.NEEDS_A_HUMAN if stalled else Reason.IDLE,
            message,
            gen,
        ),
    )


def record_check_results(
    status: ModelDeploymentStatus, step: int, results: list[CheckResult]
) -> ModelDeploymentStatus:
    """Store a step's metric check results (what RunAnalysis's executor calls)."""
    return status.model_copy(update={"checks": results, "checks_step": step})
