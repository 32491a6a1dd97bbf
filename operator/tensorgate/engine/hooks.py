"""When webhooks run and what their answers mean (``analysis.webhooks``). Pure: no I/O.

A hook is called by a ``RunHooks`` effect; its answers come back in ``status.hooks`` (one
``HookRun`` per type, for the rollout in flight) and the next decision judges them:

- ``pre-rollout``: after the golden-set gate, before the canary's first traffic step; a hook
  that does not answer 2xx (after its retries) is a failed check: the rollout rolls back.
- ``confirm-promotion``: after the last step has passed, promotion waits until every such hook
  answers 2xx, asking again once per ``analysis.interval`` (a manual gate; the phase deadline
  does not run out while it waits, ``abort`` and ``promote`` still act).
- ``rollback``: called with every step's analysis (and while promotion waits); a 2xx rolls back.
- ``post-rollout``: called once when a rollout ends Promoted or RolledBack; a failure is
  reported in a Warning Event and changes nothing.
- ``event``: every phase change and every failed check is handed over (``PostEvent``), queued
  and posted in the background; nothing waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from tensorgate.api.reasons import Phase, Reason
from tensorgate.api.spec import ModelDeploymentSpec, Webhook, WebhookType
from tensorgate.api.status import HookResult, HookRun, ModelDeploymentStatus
from tensorgate.engine.effects import Decision, Effect, Event, PostEvent, RunHooks

__all__ = [
    "HookJudgement",
    "HookVerdict",
    "hook_payload",
    "hook_run",
    "is_awaiting_confirmation",
    "judge_hooks",
    "post_rollout_event",
    "record_hook_run",
    "stamp",
    "with_notifications",
]

TERMINAL_DECISIONS = {"Promoted", "RolledBack"}
_ENDED = {None, Phase.PENDING, Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED}
_STAMP = "%Y-%m-%dT%H:%M:%SZ"


class HookVerdict(StrEnum):
    NONE = "none"  # no hook of the type: nothing to wait for
    RUN = "run"  # call them now
    WAIT = "wait"  # called recently, not yet 2xx (confirm-promotion)
    PASSED = "passed"
    FAILED = "failed"  # pre-rollout: a hook refused; rollback: a hook asked for it


@dataclass(frozen=True)
class HookJudgement:
    verdict: HookVerdict
    message: str = ""
    wait_s: float = 0.0


def stamp(now: datetime) -> str:
    """An RFC 3339 time as status writes it."""
    return now.astimezone(UTC).strftime(_STAMP)


def _seconds_since(at: str, now: datetime) -> float:
    return (now - datetime.strptime(at, _STAMP).replace(tzinfo=UTC)).total_seconds()


def hook_run(
    status: ModelDeploymentStatus, kind: WebhookType, *, step: int | None = None
) -> HookRun | None:
    """The last call of ``kind``'s hooks for the rollout in flight (at ``step``, if given)."""
    for run in status.hooks:
        if run.type != kind or run.rollout_id != status.rollout_id:
            continue
        if step is not None and run.step != step:
            return None
        return run
    return None


def record_hook_run(status: ModelDeploymentStatus, run: HookRun) -> ModelDeploymentStatus:
    """Store a call's answers (what RunHooks's executor calls); replaces that type's last."""
    others = [r for r in status.hooks if r.type != run.type]
    return status.model_copy(update={"hooks": [*others, run]})


def _names(results: list[HookResult]) -> str:
    return ", ".join(r.name for r in results)


def _answers(results: list[HookResult]) -> str:
    return "; ".join(f"{r.name}: {r.message}" for r in results)


def judge_hooks(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    kind: WebhookType,
    now: datetime,
    *,
    step: int | None = None,
    every_s: float = 60.0,
) -> HookJudgement:
    """What ``kind``'s hooks say for the rollout in flight."""
    if not spec.analysis.hooks_of(kind):
        return HookJudgement(HookVerdict.NONE)
    run = hook_run(status, kind, step=step)
    if run is None:
        names = ", ".join(h.name for h in spec.analysis.hooks_of(kind))
        return HookJudgement(HookVerdict.RUN, f"calling {kind} webhook {names}")
    refused = [r for r in run.results if not r.passed]
    if kind == WebhookType.ROLLBACK:
        asked = [r for r in run.results if r.passed]
        if asked:
            return HookJudgement(
                HookVerdict.FAILED,
                f"rollback webhook {_names(asked)} asked for a rollback ({_answers(asked)})",
            )
        return HookJudgement(HookVerdict.PASSED)
    if not refused:
        return HookJudgement(HookVerdict.PASSED, f"{kind} webhooks {_names(run.results)} passed")
    if kind == WebhookType.CONFIRM_PROMOTION:
        message = (
            f"promotion waits for confirm-promotion webhook {_names(refused)} "
            f"(last answer: {_answers(refused)})"
        )
        waited = _seconds_since(run.at, now)
        if waited >= every_s:
            return HookJudgement(HookVerdict.RUN, message)
        return HookJudgement(HookVerdict.WAIT, message, every_s - waited)
    return HookJudgement(HookVerdict.FAILED, f"{kind} webhook {_answers(refused)}")


def is_awaiting_confirmation(spec: ModelDeploymentSpec, status: ModelDeploymentStatus) -> bool:
    """Every step passed and the confirm-promotion hooks have been asked: no phase deadline
    runs out while promotion waits (nor on the decision that judges their 2xx)."""
    if status.phase != Phase.PROGRESSING or not spec.analysis.hooks_of(
        WebhookType.CONFIRM_PROMOTION
    ):
        return False
    return hook_run(status, WebhookType.CONFIRM_PROMOTION) is not None


def post_rollout_event(results: list[HookResult]) -> Event | None:
    """What a post-rollout call means: a Warning Event for hooks that failed, else nothing."""
    refused = [r for r in results if not r.passed]
    if not refused:
        return None
    return Event(
        Reason.WEBHOOK_FAILED,
        f"post-rollout webhook {_answers(refused)} (the rollout's outcome stands)",
        warning=True,
    )


def with_notifications(
    before: ModelDeploymentStatus, obs_spec: ModelDeploymentSpec, decision: Decision
) -> Decision:
    """``decision`` plus what it means for the hooks that only listen: ``event`` hooks get
    every phase change and failed check, ``post-rollout`` hooks the end of a rollout."""
    after = decision.status
    effects: tuple[Effect, ...] = decision.effects
    changed = before.phase != after.phase
    if obs_spec.analysis.hooks_of(WebhookType.EVENT):
        event = decision.event
        if event is not None and (changed or event.warning):
            effects = (*effects, PostEvent(event.reason, event.message))
        elif changed:
            effects = (*effects, PostEvent(None, after.message or ""))
    ended = (
        changed
        and before.phase not in _ENDED
        and after.phase in {Phase.PROMOTED, Phase.ROLLED_BACK}
        and after.rollout_id is not None
        and bool(after.history)
        and after.history[0].decision in TERMINAL_DECISIONS
    )
    if ended and obs_spec.analysis.hooks_of(WebhookType.POST_ROLLOUT):
        effects = (*effects, RunHooks(WebhookType.POST_ROLLOUT))
    if effects == decision.effects:
        return decision
    return Decision(
        decision.status, effects, decision.event, decision.conditions, decision.requeue_s
    )


def hook_payload(
    *,
    name: str,
    namespace: str,
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    hook: Webhook,
    reason: str = "",
    message: str = "",
) -> dict[str, Any]:
    """The JSON payload every hook receives (Flagger's ``name``, ``namespace``, ``phase`` and
    ``metadata``, plus the rollout's numbers). No URL, no secret."""
    gate = status.gate
    numbers: dict[str, Any] = {}
    if gate is not None:
        numbers = {
            "stableAccuracy": gate.stable_accuracy,
            "candidateAccuracy": gate.canary_accuracy,
            "delta": gate.delta,
            "upperBound": gate.upper_bound,
            "margin": spec.analysis.max_accuracy_drop,
            "confidence": spec.analysis.confidence,
            "n": gate.samples,
            "decision": gate.decision,
        }
    return {
        "name": name,
        "namespace": namespace,
        "phase": str(status.phase or Phase.PENDING),
        "model": spec.model.name,
        "version": status.canary_version or spec.model.version,
        "stableVersion": status.stable_version,
        "revision": status.canary_revision or status.revision,
        "rolloutId": status.rollout_id,
        "weight": status.canary_weight or 0,
        "step": status.current_step,
        "failedChecks": status.failed_checks or 0,
        "gate": numbers,
        "reason": reason,
        "message": message or status.message or "",
        "hook": {"name": hook.name, "type": str(hook.type)},
        "metadata": dict(hook.metadata),
    }
