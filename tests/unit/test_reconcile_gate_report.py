"""The reconciler publishes the gate report page after a verdict (fake platform); a page that
cannot be written is a Warning Event and never changes the verdict."""

from __future__ import annotations

from typing import Any

from tensorgate.errors import KubeAPIError
from tensorgate.platform.fake import FakePlatform, FakeRouter
from tensorgate.reconcile import Reconciler
from tests.unit.test_reconcile import ScriptedChecker, StepClock, body_for, drive


async def _roll(platform: FakePlatform, compare: str, until: str) -> tuple[dict[str, Any], list]:
    checker, clock = ScriptedChecker(compare=compare), StepClock()
    r = Reconciler(platform, {"replicas": FakeRouter()}, checker, clock, reports=platform)
    status = await drive(r, clock, "1", {}, 1, {"Promoted"})
    assert platform.reports == {}  # a first deploy has no gate
    events: list = []
    for _ in range(60):
        outcome = await r.reconcile(body_for("2", status, 2))
        status, events = outcome.status, [*events, *outcome.events]
        if status.get("phase") == until:
            return status, events
        clock.advance(outcome.requeue_s or 1)
    raise AssertionError(f"stuck in {status.get('phase')}")


async def test_reconcile_publishes_the_gate_report_after_the_comparison() -> None:
    platform = FakePlatform()
    status, events = await _roll(platform, "rollback", "RolledBack")
    assert status["gate"]["reportConfigMap"] == "m-gate-report"
    page = platform.reports["m-gate-report"]
    assert "gate says rollback" in page and "ns/m: gate of 2" in page
    assert not any(e.reason == "GateReportFailed" for e in events)
    # written once, after the comparison, before the verdict's decision
    report_at = platform.calls.index("report m-gate-report")
    assert platform.calls.count("report m-gate-report") == 1
    assert "delete canary" in platform.calls[report_at:]


async def test_reconcile_report_failure_is_a_warning_and_the_verdict_stands() -> None:
    platform = FakePlatform(report_error=KubeAPIError("POST configmaps: 403 forbidden", 403))
    status, events = await _roll(platform, "promote", "Promoted")
    assert status["stableVersion"] == "2"  # promoted all the same
    (warning,) = [e for e in events if e.reason == "GateReportFailed"]
    assert warning.warning and "403 forbidden" in warning.message
    assert "reportConfigMap" not in (status.get("gate") or {})
