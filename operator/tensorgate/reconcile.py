"""One reconcile tick: observe, ``decide``, execute the effects, return the new status.

Kept apart from kopf so the same loop drives the cluster (handlers.py) and the local
platform (``tensorgate rollout --local``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tensorgate.api.reasons import ConditionType, Phase, Reason
from tensorgate.api.spec import ModelDeploymentSpec, parse_spec
from tensorgate.api.status import CheckResult, GateStatus, ModelDeploymentStatus
from tensorgate.engine.conditions import ConditionChange, merge_conditions
from tensorgate.engine.rollout import (
    ApplyTrack,
    BeginAnalysis,
    Decision,
    DeleteCanary,
    Effect,
    Event,
    Observations,
    Route,
    RunAnalysis,
    RunComparison,
    RunSmoke,
    decide,
    record_check_results,
)
from tensorgate.errors import ConfigError, EdgeError, SpecError
from tensorgate.platform.base import Body, Platform, TrafficRouter

logger = logging.getLogger(__name__)

COMMAND_ANNOTATION = "tensorgate.dev/command"
MAX_DECISIONS_PER_TICK = 6


class Checker(Protocol):
    """The slow checks a rollout runs; each returns data, never raises for a failed check."""

    async def smoke(self, body: Body, spec: ModelDeploymentSpec, track: str) -> GateStatus:
        """Smoke inference against a track; returns gate status with smoke fields set."""

    async def compare(self, body: Body, spec: ModelDeploymentSpec, gate: GateStatus) -> GateStatus:
        """Golden-set comparison of stable vs canary; returns the completed gate status."""

    async def begin(self, body: Body, spec: ModelDeploymentSpec) -> None:
        """A step's analysis window starts now."""

    async def analyse(
        self, body: Body, spec: ModelDeploymentSpec, weight: int
    ) -> list[CheckResult]:
        """The metric checks of one step."""


class Clock(Protocol):
    def now(self) -> datetime: ...


EventSink = Callable[[Event], Awaitable[None] | None]


@dataclass
class Outcome:
    """What a tick produced: the status to write, Events posted, when to look again."""

    status: dict[str, Any]
    events: list[Event]
    requeue_s: float | None
    consumed_command: bool = False


def invalid_spec_status(
    status: ModelDeploymentStatus, exc: SpecError, generation: int, now: datetime
) -> ModelDeploymentStatus:
    message = "invalid spec: " + "; ".join(exc.errors)
    changes = (
        ConditionChange(ConditionType.READY, False, Reason.INVALID_SPEC, message, generation),
        ConditionChange(ConditionType.PROGRESSING, False, Reason.INVALID_SPEC, message, generation),
    )
    phase = status.phase if status.stable_model is not None else Phase.FAILED
    return status.model_copy(
        update={
            "phase": phase,
            "message": message,
            "observed_generation": generation,
            "conditions": merge_conditions(status.conditions, changes, now),
        }
    )


def _note_edge_error(
    status: ModelDeploymentStatus, result: object, what: str, now: datetime
) -> ModelDeploymentStatus:
    """Say in status that a check could not run (it is retried; not a verdict)."""
    if not isinstance(result, EdgeError):
        return status
    message = f"{what} could not run, retrying: {result}"
    change = ConditionChange(
        ConditionType.PROGRESSING, True, Reason.EDGE_ERROR, message, status.observed_generation or 0
    )
    return status.model_copy(
        update={
            "message": message,
            "conditions": merge_conditions(status.conditions, [change], now),
        }
    )


class Reconciler:
    """Drives one resource one tick forward. Dependencies come in once, at construction."""

    def __init__(
        self,
        platform: Platform,
        routers: Mapping[str, TrafficRouter],
        checker: Checker,
        clock: Clock,
    ) -> None:
        self._platform = platform
        self._routers = routers
        self._checker = checker
        self._clock = clock

    async def reconcile(
        self, body: Body, on_decision: Callable[[ModelDeploymentStatus], None] | None = None
    ) -> Outcome:
        """One tick; ``on_decision`` sees the status after each decision of the tick."""
        meta = body.get("metadata") or {}
        generation = int(meta.get("generation") or 1)
        status = ModelDeploymentStatus.model_validate(body.get("status") or {})
        now = self._clock.now()
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as exc:
            new = invalid_spec_status(status, exc, generation, now)
            notes: list[Event] = []
            if (status.message or "") != new.message:
                notes.append(Event(Reason.INVALID_SPEC, new.message or "", warning=True))
            return Outcome(new.to_dict(), notes, None)

        command = (meta.get("annotations") or {}).get(COMMAND_ANNOTATION)
        events: list[Event] = []
        requeue: float | None = None
        for _ in range(MAX_DECISIONS_PER_TICK):
            obs = Observations(
                spec=spec,
                generation=generation,
                now=now,
                stable=await self._platform.observe(body, "stable"),
                canary=await self._platform.observe(body, "canary"),
                command=command,
            )
            decision = decide(status, obs)
            status, edge_failed = await self._execute(body, spec, decision)
            if on_decision is not None:
                on_decision(status)
            if decision.event is not None:
                events.append(decision.event)
            requeue = decision.requeue_s
            if not decision.runs_check or edge_failed:
                requeue = requeue or 2.0
                break
            now = self._clock.now()
        return Outcome(status.to_dict(), events, requeue, consumed_command=command is not None)

    async def _execute(
        self, body: Body, spec: ModelDeploymentSpec, d: Decision
    ) -> tuple[ModelDeploymentStatus, bool]:
        """Run the effects in order; True when a check could not run (retried next tick)."""
        status = d.status.model_copy(
            update={
                "conditions": merge_conditions(d.status.conditions, d.conditions, self._clock.now())
            }
        )
        before = status
        for effect in d.effects:
            status = await self._run(body, spec, status, effect)
        edge_failed = d.runs_check and (status.gate, status.checks_step) == (
            before.gate,
            before.checks_step,
        )
        return status, edge_failed

    async def _run(
        self, body: Body, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, effect: Effect
    ) -> ModelDeploymentStatus:
        match effect:
            case ApplyTrack(track=track, model=model, replicas=replicas):
                await self._platform.apply_track(body, spec, track, model, replicas)
            case DeleteCanary():
                await self._platform.delete_track(body, "canary")
            case Route(weight=weight):
                await self._routers[spec.traffic.router].route(body, spec, weight)
            case BeginAnalysis():
                began = await self._guard(self._checker.begin(body, spec), "analysis window")
                status = _note_edge_error(status, began, "analysis window", self._clock.now())
            case RunSmoke(track=track):
                gate = await self._guard(self._checker.smoke(body, spec, track), "smoke")
                status = _note_edge_error(status, gate, "smoke inference", self._clock.now())
                if isinstance(gate, ConfigError):
                    gate = GateStatus(
                        smoke_passed=False,
                        reasons=[str(gate)],
                        smoke=[CheckResult(name="inputs", passed=False, message=str(gate))],
                    )
                if isinstance(gate, GateStatus):
                    base = status.gate or GateStatus()
                    merged = base.model_copy(
                        update={
                            "smoke": gate.smoke,
                            "smoke_passed": gate.smoke_passed,
                            "reasons": gate.reasons,
                        }
                    )
                    status = status.model_copy(update={"gate": merged})
            case RunComparison():
                gate = await self._guard(
                    self._checker.compare(body, spec, status.gate or GateStatus()), "compare"
                )
                status = _note_edge_error(status, gate, "golden-set comparison", self._clock.now())
                if isinstance(gate, ConfigError):
                    gate = (status.gate or GateStatus()).model_copy(
                        update={"compared": True, "decision": "rollback", "reasons": [str(gate)]}
                    )
                if isinstance(gate, GateStatus):
                    status = status.model_copy(update={"gate": gate})
            case RunAnalysis(step=step):
                weight = spec.analysis.steps[step]
                results = await self._guard(self._checker.analyse(body, spec, weight), "analyse")
                status = _note_edge_error(status, results, "metric analysis", self._clock.now())
                if isinstance(results, list):
                    status = record_check_results(status, step, results)
        return status

    async def _guard(self, call: Awaitable[Any], what: str) -> Any:
        """An edge failure during a check is retried next tick, not taken as a verdict."""
        try:
            return await call
        except EdgeError as exc:
            logger.warning("%s failed, will retry: %s", what, exc)
            return exc
        except ConfigError as exc:  # e.g. an unreadable golden set: a verdict, not a retry
            logger.warning("%s cannot run: %s", what, exc)
            return exc
