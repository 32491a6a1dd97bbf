"""The ModelDeployment status: everything a restarted operator needs to resume, and every
number a human needs to understand a decision. Generated into the CRD like the spec."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tensorgate.api.reasons import Phase


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Condition(_Status):
    type: str = Field(
        description="Ready, Progressing, Degraded, Reconciling, Stalled or GateWarning."
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason, also used as the Event reason.")
    message: str = Field(default="", description="Human-readable details with the numbers.")
    last_transition_time: str | None = Field(
        default=None, description="When status last flipped (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this condition was computed for."
    )


class CheckResult(_Status):
    name: str = Field(description="Check name.")
    passed: bool = Field(description="Whether the check passed.")
    message: str = Field(default="", description="Observed value vs limit.")
    value: float | None = Field(default=None, description="Observed value, when numeric.")


class SliceVerdict(_Status):
    slice: str = Field(description="Slice id (a value of the analysis.slices array).")
    n: int = Field(description="Golden-set samples in the slice.")
    b: int = Field(description="Samples only the stable model classified correctly.")
    c: int = Field(description="Samples only the candidate classified correctly.")


class VerdictRecord(_Status):
    """What the accuracy verdict was decided from: ``tensorgate.engine.stats.replay_verdict``
    recomputes the decision from ``to_dict()`` alone."""

    n: int = Field(description="Paired golden-set samples scored.")
    b: int = Field(description="Samples only the stable model classified correctly.")
    c: int = Field(description="Samples only the candidate classified correctly.")
    confidence: float = Field(description="One-sided confidence of the bound.")
    margin: float = Field(description="maxAccuracyDrop, the non-inferiority margin.")
    method: str = Field(description="Test method, e.g. tango-score-cc.")
    checks_passed: bool = Field(
        default=True, description="Whether every other canary check passed."
    )
    slices: list[SliceVerdict] = Field(
        default_factory=list, description="Per-slice discordant counts (analysis.slices)."
    )
    slice_margin: float | None = Field(default=None, description="maxSliceAccuracyDrop.")
    min_slice_support: int | None = Field(
        default=None, description="Slices with fewer samples are not tested."
    )
    decide_on_slices: bool = Field(
        default=False, description="Whether the slice tests could roll back."
    )
    unlabeled_samples: int | None = Field(
        default=None, description="Unlabeled production inputs both models scored."
    )
    unlabeled_agreed: int | None = Field(
        default=None, description="Of those, how many got the same predicted class."
    )
    min_agreement: float | None = Field(default=None, description="analysis.minAgreement.")


class ClassRecall(_Status):
    label: int = Field(description="Class id whose recall fell by more than the margin.")
    support: int = Field(description="Golden-set samples of the class.")
    stable_recall: float = Field(description="Stable model's recall of the class.")
    candidate_recall: float = Field(description="Candidate's recall of the class.")


class GateStatus(_Status):
    version: str | None = Field(default=None, description="Candidate version judged.")
    revision: str | None = Field(default=None, description="Candidate revision judged.")
    decision: str | None = Field(default=None, description="promote or rollback.")
    smoke_passed: bool | None = Field(default=None, description="Smoke inference verdict.")
    compared: bool | None = Field(
        default=None, description="Whether the golden-set comparison has run."
    )
    reasons: list[str] = Field(default_factory=list, description="Why it failed, in words.")
    warnings: list[str] = Field(
        default_factory=list,
        description="What makes the verdict weak even when it passed (a golden set too small "
        "to ever promote, a stable model scoring near chance).",
    )
    stable_accuracy: float | None = Field(default=None, description="Stable accuracy.")
    canary_accuracy: float | None = Field(default=None, description="Candidate accuracy.")
    delta: float | None = Field(default=None, description="stable - candidate accuracy.")
    upper_bound: float | None = Field(
        default=None, description="One-sided upper confidence bound of the drop."
    )
    p_value: float | None = Field(
        default=None, description="p-value of the non-inferiority test (small = safe)."
    )
    samples: int | None = Field(default=None, description="Golden-set samples scored.")
    agreement: float | None = Field(default=None, description="Prediction agreement.")
    method: str | None = Field(default=None, description="Test method of the accuracy gate.")
    verdict: VerdictRecord | None = Field(
        default=None, description="The numbers the accuracy verdict was decided from."
    )
    smoke: list[CheckResult] = Field(default_factory=list, description="Smoke checks.")
    contract_diff: list[str] = Field(
        default_factory=list,
        description="How the candidate's served signature differs from the stable model's "
        "(inputs/outputs added, removed or renamed; dtype, rank or fixed dimensions changed).",
    )
    canary_checks: list[CheckResult] = Field(
        default_factory=list,
        description="Canary checks (finite outputs, minAccuracy, slices, agreement).",
    )
    class_recall_changes: list[ClassRecall] = Field(
        default_factory=list,
        description="Classes whose recall fell by more than the margin (informative; at most 20).",
    )
    report_config_map: str | None = Field(
        default=None,
        description="ConfigMap (same namespace) whose data key report.html holds this "
        "gate's self-contained HTML report; one per ModelDeployment, overwritten by each "
        "rollout's gate.",
    )


class HistoryEntry(_Status):
    version: str = Field(description="Candidate version.")
    revision: str | None = Field(default=None, description="Candidate revision.")
    decision: str = Field(description="Promoted, RolledBack or Superseded.")
    reason: str = Field(default="", description="Why.")
    at: str = Field(description="When the decision was taken (RFC 3339).")
    stable_accuracy: float | None = Field(default=None, description="Stable accuracy.")
    canary_accuracy: float | None = Field(default=None, description="Candidate accuracy.")


class HookResult(_Status):
    """One webhook's answer (after its retries)."""

    name: str = Field(description="Webhook name (analysis.webhooks[].name).")
    passed: bool = Field(description="Whether it answered 2xx.")
    code: int | None = Field(default=None, description="Last HTTP status; none: no answer.")
    attempts: int = Field(default=1, description="Calls made (1 + retries used).")
    message: str = Field(default="", description="What it answered, in words (no URL).")


class HookRun(_Status):
    """The webhooks of one type, called for one rollout (and step)."""

    type: str = Field(description="pre-rollout, confirm-promotion, rollback or post-rollout.")
    rollout_id: str | None = Field(default=None, description="The rollout they were called for.")
    step: int | None = Field(default=None, description="Step index (rollback hooks).")
    at: str = Field(description="When they were called (RFC 3339).")
    results: list[HookResult] = Field(default_factory=list, description="Each hook's answer.")


class StableModel(_Status):
    name: str = Field(description="TF Serving model name of the stable track.")
    version: str = Field(description="Stable version.")
    uri: str = Field(description="Stable model base path.")
    revision: str | None = Field(
        default=None, description="Rollout revision the stable track was promoted at."
    )


class CommandStatus(_Status):
    id: str = Field(description="Identifier of the last command seen (applied once).")
    name: str = Field(description="promote, abort or retry.")
    result: Literal["Applied", "Ignored"] = Field(description="Applied or Ignored.")
    message: str = Field(default="", description="What the command did, or why not.")
    at: str = Field(description="When the command was handled (RFC 3339).")


class PendingEvent(_Status):
    reason: str = Field(description="Event reason.")
    message: str = Field(default="", description="Event message.")
    warning: bool = Field(default=False, description="A Warning Event (else Normal).")


class UnrecordedDecision(_Status):
    """A decision written to status whose ledger row and Event may not be written yet: a
    restarted operator writes them from here (the ledger ignores a replayed transition)."""

    previous: dict[str, Any] = Field(
        default_factory=dict, description="The status the decision was taken from."
    )
    events: list[PendingEvent] = Field(default_factory=list, description="Its Events.")


class ModelDeploymentStatus(_Status):
    phase: Phase | None = Field(default=None, description="Where the rollout stands.")
    message: str | None = Field(default=None, description="Last decision, in words.")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation last acted on."
    )
    stable_version: str | None = Field(default=None, description="Version serving users.")
    canary_version: str | None = Field(default=None, description="Version under rollout.")
    canary_weight: int | None = Field(
        default=None,
        description="Canary traffic percent as served: the canary's share of serving pods with "
        "the replicas router, the HTTPRoute weight with gateway-api.",
    )
    revision: str | None = Field(
        default=None,
        description="Rollout revision of the spec last acted on: a hash of everything the "
        "verdict depends on (model, contract, golden set, smoke settings, pod template).",
    )
    canary_revision: str | None = Field(default=None, description="Revision under rollout.")
    last_command: CommandStatus | None = Field(
        default=None, description="The last tensorgate.dev/command handled."
    )
    edge_errors: int | None = Field(
        default=None,
        description="Consecutive checks that could not run (edge errors) in this phase.",
    )
    current_step: int | None = Field(default=None, description="Index into analysis.steps.")
    failed_checks: int | None = Field(default=None, description="Failed checks this rollout.")
    phase_started_at: str | None = Field(default=None, description="When the phase began.")
    step_started_at: str | None = Field(default=None, description="When the step began.")
    stable_model: StableModel | None = Field(
        default=None, description="The model spec the stable track runs (for rollback)."
    )
    gate: GateStatus | None = Field(default=None, description="Last gate result.")
    checks: list[CheckResult] = Field(default_factory=list, description="Last metric checks.")
    checks_step: int | None = Field(
        default=None, description="Step index the last metric checks were judged at."
    )
    hooks: list[HookRun] = Field(
        default_factory=list,
        description="The last call of each webhook type (analysis.webhooks), for this rollout.",
    )
    rollout_id: str | None = Field(
        default=None, description="Identifier of the rollout in the ledger."
    )
    history: list[HistoryEntry] = Field(
        default_factory=list, description="The last 10 rollouts, newest first."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Conditions.")
    unrecorded: UnrecordedDecision | None = Field(
        default=None,
        description="The last decision until its ledger row and Event are written (an "
        "operator killed in between writes them when it starts again).",
    )
