"""One decision: observe, ``decide``, execute the effects, return the new status.

Kept apart from kopf so the same loop drives the cluster (``driver.py`` under kopf) and the
local platform (``tensorgate rollout --local``). Each call takes exactly one decision; the
caller writes its status before calling again, so no decision is ever folded into another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from tensorgate.api.reasons import ConditionType, Phase, Reason
from tensorgate.api.spec import (
    ModelDeploymentSpec,
    WebhookType,
    metadata_problems,
    parse_duration_s,
    parse_spec,
)
from tensorgate.api.status import CheckResult, GateStatus, HookRun, ModelDeploymentStatus
from tensorgate.engine.conditions import ConditionChange, merge_conditions
from tensorgate.engine.effects import CommandRequest, PostEvent, RunHooks
from tensorgate.engine.hooks import hook_payload, post_rollout_event, record_hook_run, stamp
from tensorgate.engine.revision import rollout_revision
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
    kstatus_conditions,
    record_check_results,
)
from tensorgate.errors import ConfigError, EdgeError, SpecError
from tensorgate.gate.golden import golden_rows
from tensorgate.gate.status_report import render_gate_status
from tensorgate.notify.base import WebhookSender
from tensorgate.notify.webhooks import HttpWebhookSender
from tensorgate.platform.base import Body, Platform, ReportStore, TrafficRouter

logger = logging.getLogger(__name__)

COMMAND_ANNOTATION = "tensorgate.dev/command"
COMMAND_ID_ANNOTATION = "tensorgate.dev/command-id"
# A check never runs longer than what is left of its phase's deadline, nor than this.
MAX_CHECK_S = 3600.0
# Reading the golden set's size before a rollout never holds the decision up longer.
GOLDEN_SIZE_TIMEOUT_S = 30.0
# Writing the gate report page never holds the decision up longer.
REPORT_TIMEOUT_S = 30.0


def read_command(meta: Mapping[str, Any]) -> CommandRequest | None:
    """The command annotation, if any. Its id (``tensorgate.dev/command-id``, set by
    ``kubectl tensorgate``) makes it apply once; a bare annotation is identified by its value."""
    annotations = meta.get("annotations") or {}
    name = annotations.get(COMMAND_ANNOTATION)
    if not name:
        return None
    return CommandRequest(id=str(annotations.get(COMMAND_ID_ANNOTATION) or name), name=str(name))


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
    """What one decision produced: the status to write, its Event, when to decide again
    (0: at once; None: only when something changes)."""

    status: dict[str, Any]
    events: list[Event]
    requeue_s: float | None


def starts_rollout(
    before: ModelDeploymentStatus, after: ModelDeploymentStatus, revision: str
) -> bool:
    """Whether the decision from ``before`` to ``after`` starts a rollout of ``revision``
    (a first deploy has no gate and is not one)."""
    if after.phase != Phase.DEPLOYING or after.stable_model is None:
        return False
    if after.canary_revision != revision:
        return False
    return (
        before.phase != Phase.DEPLOYING
        or before.canary_revision != revision
        or before.rollout_id != after.rollout_id
    )


def _has_verdict(decision: Decision, gate: GateStatus) -> bool:
    """The decision ran the check that decides the gate, and it decided."""
    for effect in decision.effects:
        if isinstance(effect, RunComparison) and gate.compared:
            return True
        if isinstance(effect, RunSmoke) and gate.smoke_passed is False:
            return True
    return False


def invalid_spec_status(
    status: ModelDeploymentStatus, exc: SpecError, generation: int, now: datetime
) -> ModelDeploymentStatus:
    message = "invalid spec: " + "; ".join(exc.errors)
    changes = (
        ConditionChange(ConditionType.READY, False, Reason.INVALID_SPEC, message, generation),
        ConditionChange(ConditionType.PROGRESSING, False, Reason.INVALID_SPEC, message, generation),
        ConditionChange(ConditionType.RECONCILING, False, Reason.INVALID_SPEC, message, generation),
        ConditionChange(ConditionType.STALLED, True, Reason.INVALID_SPEC, message, generation),
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


class Reconciler:
    """Takes one resource one decision forward. Dependencies come in once, at construction."""

    def __init__(
        self,
        platform: Platform,
        routers: Mapping[str, TrafficRouter],
        checker: Checker,
        clock: Clock,
        *,
        reports: ReportStore | None = None,
        webhooks: WebhookSender | None = None,
    ) -> None:
        self._platform = platform
        self._routers = routers
        self._checker = checker
        self._clock = clock
        self._reports = reports
        self.webhooks: WebhookSender = webhooks or HttpWebhookSender()

    async def reconcile(
        self, body: Body, on_decision: Callable[[ModelDeploymentStatus], None] | None = None
    ) -> Outcome:
        """One decision; ``on_decision`` sees the status it produced."""
        meta = body.get("metadata") or {}
        generation = int(meta.get("generation") or 1)
        status = ModelDeploymentStatus.model_validate(body.get("status") or {})
        now = self._clock.now()
        problems = metadata_problems(meta)  # child names must fit: <name>-canary <= 63
        try:
            spec = parse_spec(body.get("spec"))
        except SpecError as exc:
            problems = [*problems, *exc.errors]
        if problems:
            new = invalid_spec_status(status, SpecError(problems), generation, now)
            notes: list[Event] = []
            if (status.message or "") != new.message:
                notes.append(Event(Reason.INVALID_SPEC, new.message or "", warning=True))
            return Outcome(new.to_dict(), notes, None)

        obs = Observations(
            spec=spec,
            generation=generation,
            now=now,
            revision=rollout_revision(spec),
            stable=await self._platform.observe(body, "stable"),
            canary=await self._platform.observe(body, "canary"),
            command=read_command(meta),
        )
        decision = decide(status, obs)
        decision = await self._with_golden_rows(body, spec, status, obs, decision)
        extra: list[Event] = []  # what the effects' outcomes add (a failed post-rollout hook)
        status = await self._execute(body, spec, decision, extra)
        status, report_events = await self._publish_report(body, spec, decision, status)
        if on_decision is not None:
            on_decision(status)
        events = [decision.event] if decision.event is not None else []
        events += extra + report_events
        return Outcome(status.to_dict(), events, decision.requeue_s)

    async def _with_golden_rows(
        self,
        body: Body,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        obs: Observations,
        decision: Decision,
    ) -> Decision:
        """The decision again, with the golden set's row count, when it starts a rollout:
        the count is read once per rollout start (from the labels' header), never on other
        decisions; an unreadable golden set leaves the decision as it was."""
        if spec.golden_set is None or not starts_rollout(status, decision.status, obs.revision):
            return decision
        rows = await self._golden_rows(body, spec)
        if rows is None:
            return decision
        return decide(status, replace(obs, golden_rows=rows))

    async def _golden_rows(self, body: Body, spec: ModelDeploymentSpec) -> int | None:
        assert spec.golden_set is not None
        try:
            data = await asyncio.wait_for(
                self._platform.read_golden(body, spec), timeout=GOLDEN_SIZE_TIMEOUT_S
            )
            return golden_rows(data, spec.golden_set)
        except (TimeoutError, EdgeError, ConfigError) as exc:
            logger.info("golden set size not known before the rollout (judged later): %s", exc)
            return None

    async def _publish_report(
        self,
        body: Body,
        spec: ModelDeploymentSpec,
        decision: Decision,
        status: ModelDeploymentStatus,
    ) -> tuple[ModelDeploymentStatus, list[Event]]:
        """After a gate verdict (a golden-set comparison, or a failed smoke test), store its
        HTML page (``ReportStore``) and name it in ``status.gate.reportConfigMap``. A page
        that cannot be written is logged and a Warning Event; it never changes the verdict."""
        gate = status.gate
        if self._reports is None or gate is None or not _has_verdict(decision, gate):
            return status, []
        meta = body.get("metadata") or {}
        title = (
            f"{meta.get('namespace', 'default')}/{meta.get('name', '')}: gate of "
            f"{gate.version or spec.model.version} (revision {gate.revision or '-'}) vs "
            f"stable {status.stable_version or '-'}"
        )
        try:
            page = render_gate_status(
                gate,
                confidence=spec.analysis.confidence,
                margin=spec.analysis.max_accuracy_drop,
                title=title,
            )
            name = await asyncio.wait_for(
                self._reports.publish_report(body, page), timeout=REPORT_TIMEOUT_S
            )
        except (TimeoutError, EdgeError, ConfigError, ValueError) as exc:
            logger.warning("gate report not written (the verdict stands): %s", exc)
            why = f"gate report not written (the verdict stands): {exc}"
            return status, [Event(Reason.GATE_REPORT_FAILED, why, warning=True)]
        gate = gate.model_copy(update={"report_config_map": name})
        return status.model_copy(update={"gate": gate}), []

    async def _execute(
        self, body: Body, spec: ModelDeploymentSpec, d: Decision, notes: list[Event]
    ) -> ModelDeploymentStatus:
        """Run the effects in order; the outcome of a check lands in the returned status."""
        changes = (
            *d.conditions,
            *kstatus_conditions(d.status, d.status.revision, d.status.observed_generation or 0),
        )
        status = d.status.model_copy(
            update={"conditions": merge_conditions(d.status.conditions, changes, self._clock.now())}
        )
        for effect in d.effects:
            status = await self._run(body, spec, status, effect, notes)
        return status

    def _check_timeout_s(self, spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> float:
        """What is left of the phase's progressDeadline (a check never outlives its phase)."""
        deadline_s = parse_duration_s(spec.analysis.progress_deadline)
        since = status.step_started_at if status.phase == Phase.PROGRESSING else None
        since = since or status.phase_started_at
        if since is None:
            return min(deadline_s, MAX_CHECK_S)
        started = datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=self._clock.now().tzinfo
        )
        if status.phase == Phase.PROGRESSING:
            deadline_s += parse_duration_s(spec.analysis.interval)
        left = deadline_s - (self._clock.now() - started).total_seconds()
        return max(1.0, min(left + 1.0, MAX_CHECK_S))

    async def _run(
        self,
        body: Body,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        effect: Effect,
        notes: list[Event],
    ) -> ModelDeploymentStatus:
        match effect:
            case ApplyTrack(track=track, model=model, replicas=replicas, revision=revision):
                await self._platform.apply_track(
                    body, spec, track, model, replicas, revision=revision
                )
            case DeleteCanary():
                await self._platform.delete_track(body, "canary")
            case Route(weight=weight):
                await self._routers[spec.traffic.router].route(body, spec, weight)
            case BeginAnalysis():
                began = await self._guard(self._checker.begin(body, spec), "analysis window", 60)
                status = self._count(status, began, "analysis window")
            case RunSmoke(track=track):
                timeout_s = self._check_timeout_s(spec, status)
                gate = await self._guard(self._checker.smoke(body, spec, track), "smoke", timeout_s)
                status = self._count(status, gate, "smoke inference")
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
                            "contract_diff": gate.contract_diff,
                            "revision": status.canary_revision,
                        }
                    )
                    status = status.model_copy(update={"gate": merged})
            case RunComparison():
                timeout_s = self._check_timeout_s(spec, status)
                gate = await self._guard(
                    self._checker.compare(body, spec, status.gate or GateStatus()),
                    "compare",
                    timeout_s,
                )
                status = self._count(status, gate, "golden-set comparison")
                if isinstance(gate, ConfigError):
                    gate = (status.gate or GateStatus()).model_copy(
                        update={"compared": True, "decision": "rollback", "reasons": [str(gate)]}
                    )
                if isinstance(gate, GateStatus):
                    gate = gate.model_copy(update={"revision": status.canary_revision})
                    status = status.model_copy(update={"gate": gate})
            case RunAnalysis(step=step):
                weight = spec.analysis.steps[step]
                timeout_s = self._check_timeout_s(spec, status)
                results = await self._guard(
                    self._checker.analyse(body, spec, weight), "analyse", timeout_s
                )
                status = self._count(status, results, "metric analysis")
                if isinstance(results, list):
                    status = record_check_results(status, step, results)
            case RunHooks(type=kind, step=step):
                status = await self._run_hooks(body, spec, status, kind, step, notes)
            case PostEvent(reason=reason, message=message):
                self._post_event(body, spec, status, str(reason or ""), message)
        return status

    async def _run_hooks(
        self,
        body: Body,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        kind: WebhookType,
        step: int | None,
        notes: list[Event],
    ) -> ModelDeploymentStatus:
        """Call ``kind``'s webhooks together; their answers land in status.hooks (each call
        is bounded by its hook's timeout and retries, a failure is an answer)."""
        meta = body.get("metadata") or {}
        hooks = spec.analysis.hooks_of(kind)
        calls = [
            self.webhooks.call(
                hook,
                hook_payload(
                    name=str(meta.get("name")),
                    namespace=str(meta.get("namespace") or "default"),
                    spec=spec,
                    status=status,
                    hook=hook,
                ),
            )
            for hook in hooks
        ]
        results = list(await asyncio.gather(*calls))
        run = HookRun(
            type=str(kind),
            rollout_id=status.rollout_id,
            step=step,
            at=stamp(self._clock.now()),
            results=results,
        )
        if kind == WebhookType.POST_ROLLOUT:
            event = post_rollout_event(results)
            if event is not None:
                logger.warning("%s", event.message)
                notes.append(event)
        return record_hook_run(status, run)

    def _post_event(
        self,
        body: Body,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        reason: str,
        message: str,
    ) -> None:
        """Queue the Event for the ``event`` webhooks (never waited for)."""
        meta = body.get("metadata") or {}
        for hook in spec.analysis.hooks_of(WebhookType.EVENT):
            payload = hook_payload(
                name=str(meta.get("name")),
                namespace=str(meta.get("namespace") or "default"),
                spec=spec,
                status=status,
                hook=hook,
                reason=reason,
                message=message,
            )
            self.webhooks.post(hook, payload)

    def _count(
        self, status: ModelDeploymentStatus, result: object, what: str
    ) -> ModelDeploymentStatus:
        """Count consecutive checks that could not run (the engine judges the count against
        analysis.maxEdgeErrors); a check that ran resets it."""
        if not isinstance(result, EdgeError):
            return status.model_copy(update={"edge_errors": None})
        errors = (status.edge_errors or 0) + 1
        message = f"{what} could not run ({errors} in a row), retrying: {result}"
        change = ConditionChange(
            ConditionType.PROGRESSING,
            True,
            Reason.EDGE_ERROR,
            message,
            status.observed_generation or 0,
        )
        return status.model_copy(
            update={
                "edge_errors": errors,
                "message": message,
                "conditions": merge_conditions(status.conditions, [change], self._clock.now()),
            }
        )

    async def _guard(self, call: Awaitable[Any], what: str, timeout_s: float) -> Any:
        """An edge failure during a check is retried, not taken as a verdict; a check that
        outlives its deadline is cancelled and counted as an edge failure."""
        try:
            return await asyncio.wait_for(call, timeout=timeout_s)
        except TimeoutError:
            logger.warning("%s did not finish within %.0fs", what, timeout_s)
            return EdgeError(f"{what} did not finish within {timeout_s:.0f}s")
        except EdgeError as exc:
            logger.warning("%s failed, will retry: %s", what, exc)
            return exc
        except ConfigError as exc:  # e.g. an unreadable golden set: a verdict, not a retry
            logger.warning("%s cannot run: %s", what, exc)
            return exc
