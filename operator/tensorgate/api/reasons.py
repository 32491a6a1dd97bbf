"""Every condition/Event reason and phase, in one place (CamelCase, stable for alerting)."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    PENDING = "Pending"
    DEPLOYING = "Deploying"
    SMOKE_TESTING = "SmokeTesting"
    EVALUATING = "Evaluating"
    PROGRESSING = "Progressing"
    PROMOTING = "Promoting"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    # Flux's kstatus conventions: working on it / needs a human to go on.
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    # The last gate's verdict stands but is weak (``status.gate.warnings``: the stable model
    # near chance on the golden set, a golden set too small to ever promote, a slice that
    # regressed but does not decide): True says so without touching Ready (users are served)
    # or Degraded (nothing failed).
    GATE_WARNING = "GateWarning"


class Reason(StrEnum):
    """Reasons shared by conditions and Events."""

    INVALID_SPEC = "InvalidSpec"
    DEPLOYING = "Deploying"
    AVAILABLE = "Available"
    UNSCHEDULABLE = "Unschedulable"
    READINESS_TIMEOUT = "ReadinessTimeout"
    SMOKE_TESTING = "SmokeTesting"
    SMOKE_TEST_PASSED = "SmokeTestPassed"
    SMOKE_TEST_FAILED = "SmokeTestFailed"
    EVALUATING = "Evaluating"
    ACCURACY_GATE_PASSED = "AccuracyGatePassed"
    ACCURACY_GATE_FAILED = "AccuracyGateFailed"
    GOLDEN_SET_TOO_SMALL = "GoldenSetTooSmall"
    GATE_REPORT_FAILED = "GateReportFailed"
    WEAK_VERDICT = "WeakVerdict"
    NO_WARNINGS = "NoWarnings"
    STEP_ADVANCED = "StepAdvanced"
    METRIC_CHECK_FAILED = "MetricCheckFailed"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    PAUSED = "Paused"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"
    EDGE_ERROR = "EdgeError"
    EDGE_ERROR_LIMIT = "EdgeErrorLimit"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    COMMAND_IGNORED = "CommandIgnored"
    RETRYING = "Retrying"
    WEBHOOK_FAILED = "WebhookFailed"
    WEBHOOK_ROLLBACK = "WebhookRollback"
    WAITING_FOR_CONFIRMATION = "WaitingForConfirmation"
    ROLLOUT_IN_FLIGHT = "RolloutInFlight"
    IDLE = "Idle"
    NEEDS_A_HUMAN = "NeedsAHuman"
