"""The reconcile loop on fakes: effects executed in order, check outcomes fed back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tensorgate.api.spec import ModelDeploymentSpec
from tensorgate.api.status import CheckResult, GateStatus
from tensorgate.errors import ConfigError, ServingError
from tensorgate.platform.base import Body
from tensorgate.platform.fake import FakePlatform, FakeRouter
from tensorgate.reconcile import Reconciler
from tests.unit.engine.conftest import make_spec


class StepClock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 25, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


class ScriptedChecker:
    """Answers smoke/compare/analyse from a script; an exception in the script is raised."""

    def __init__(self, smoke: Any = True, compare: Any = "promote", metrics: Any = True) -> None:
        self.script = {"smoke": smoke, "compare": compare, "metrics": metrics}
        self.calls: list[str] = []

    def _next(self, key: str) -> Any:
        value = self.script[key]
        if isinstance(value, list):
            value = value.pop(0) if len(value) > 1 else value[0]
        if isinstance(value, Exception):
            raise value
        return value

    async def smoke(self, body: Body, spec: ModelDeploymentSpec, track: str) -> GateStatus:
        self.calls.append("smoke")
        ok = self._next("smoke")
        return GateStatus(smoke_passed=ok, smoke=[CheckResult(name="signature", passed=ok)])

    async def compare(self, body: Body, spec: ModelDeploymentSpec, gate: GateStatus) -> GateStatus:
        self.calls.append("compare")
        decision = self._next("compare")
        return gate.model_copy(
            update={"compared": True, "decision": decision, "reasons": [f"gate says {decision}"]}
        )

    async def begin(self, body: Body, spec: ModelDeploymentSpec) -> None:
        self.calls.append("begin")

    async def analyse(
        self, body: Body, spec: ModelDeploymentSpec, weight: int
    ) -> list[CheckResult]:
        self.calls.append(f"analyse@{weight}")
        ok = self._next("metrics")
        return [CheckResult(name="error-rate", passed=ok, message=f"error-rate ok={ok}")]


def body_for(version: str, status: dict[str, Any], generation: int) -> dict[str, Any]:
    spec = make_spec(version).to_dict()
    return {
        "metadata": {"name": "m", "namespace": "ns", "generation": generation},
        "spec": spec,
        "status": status,
    }


async def drive(
    r: Reconciler,
    clock: StepClock,
    version: str,
    status: dict[str, Any],
    generation: int,
    until: set[str],
    ticks: int = 40,
) -> dict[str, Any]:
    for _ in range(ticks):
        outcome = await r.reconcile(body_for(version, status, generation))
        status = outcome.status
        if status.get("phase") in until and status.get("observedGeneration") == generation:
            return status
        clock.advance(outcome.requeue_s or 1)
    raise AssertionError(f"stuck in {status.get('phase')}: {status.get('message')}")


async def test_reconcile_promotes_through_every_step() -> None:
    platform, router, checker, clock = (
        FakePlatform(golden=b""),
        FakeRouter(),
        ScriptedChecker(),
        StepClock(),
    )
    r = Reconciler(platform, {"replicas": router}, checker, clock)
    status = await drive(r, clock, "1", {}, 1, {"Promoted"})
    status = await drive(r, clock, "2", status, 2, {"Promoted"}, ticks=60)
    assert status["stableVersion"] == "2"
    # 4 replicas: 10% is one pod of four (25%); the stable pods serve until the canary has
    # every pod, then the promotion moves them back to the (new) stable track.
    assert router.weights[:3] == [0, 25, 50] and 100 in router.weights
    assert router.weights[-1] == 0
    assert checker.calls[:2] == ["smoke", "compare"]
    assert [c for c in checker.calls if c.startswith("analyse")] == [
        "analyse@10",
        "analyse@50",
        "analyse@100",
    ]
    assert "delete canary" in platform.calls


async def test_reconcile_edge_error_during_smoke_is_retried_not_judged() -> None:
    platform, router, clock = FakePlatform(), FakeRouter(), StepClock()
    checker = ScriptedChecker(smoke=[ServingError("connection refused"), True], compare="rollback")
    r = Reconciler(platform, {"replicas": router}, checker, clock)
    status = await drive(r, clock, "1", {}, 1, {"Promoted"})
    outcome = await r.reconcile(body_for("2", status, 2))  # deploy canary
    outcome = await r.reconcile(body_for("2", outcome.status, 2))  # canary ready: SmokeTesting
    assert outcome.status["phase"] == "SmokeTesting" and outcome.requeue_s == 0
    outcome = await r.reconcile(body_for("2", outcome.status, 2))  # smoke: edge error
    progressing = next(c for c in outcome.status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "EdgeError" and "connection refused" in progressing["message"]
    assert outcome.status["phase"] == "SmokeTesting"
    status = await drive(r, clock, "2", outcome.status, 2, {"RolledBack"})
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "AccuracyGateFailed"
    assert router.weights[-1] == 0 and 10 not in router.weights


async def test_reconcile_unreadable_golden_set_rolls_back_with_the_reason() -> None:
    platform, router, clock = FakePlatform(), FakeRouter(), StepClock()
    checker = ScriptedChecker(compare=ConfigError("spec.goldenSet.uri '/g.npz': no such file"))
    r = Reconciler(platform, {"replicas": router}, checker, clock)
    status = await drive(r, clock, "1", {}, 1, {"Promoted"})
    status = await drive(r, clock, "2", status, 2, {"RolledBack"})
    assert "no such file" in status["message"]


async def test_reconcile_invalid_spec_reports_every_field_once() -> None:
    r = Reconciler(FakePlatform(), {"replicas": FakeRouter()}, ScriptedChecker(), StepClock())
    bad = {
        "metadata": {"name": "m", "generation": 1},
        "spec": {"model": {"name": "m", "version": "x"}},
    }
    first = await r.reconcile(bad)
    assert first.status["phase"] == "Failed"
    ready = first.status["conditions"][0]
    assert ready["reason"] == "InvalidSpec"
    assert "spec.model.version" in ready["message"] and "spec.model.uri" in ready["message"]
    assert "spec.contract" in ready["message"]
    assert len(first.events) == 1
    again = await r.reconcile({**bad, "status": first.status})
    assert again.events == [] and again.status == first.status


async def test_reconcile_name_too_long_for_its_children_is_invalid_spec() -> None:
    """The API server takes a 60-character name; its Deployment <name>-canary would not fit 63,
    so the operator reports it (Ready=False, InvalidSpec) and creates nothing."""
    platform = FakePlatform()
    r = Reconciler(platform, {"replicas": FakeRouter()}, ScriptedChecker(), StepClock())
    body = body_for("1", {}, 1)
    body["metadata"]["name"] = "m" * 60
    outcome = await r.reconcile(body)
    assert outcome.status["phase"] == "Failed"
    assert "metadata.name: 60 characters" in outcome.status["message"]
    assert platform.calls == []
