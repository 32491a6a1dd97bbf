"""The Reconciler executes RunHooks and PostEvent: answers land in status.hooks, payloads carry
the object and the hook, a failed post-rollout hook adds a Warning Event, event hooks are
handed every phase change (fake sender; the real one is tested on loopback)."""

from __future__ import annotations

from typing import Any

from tensorgate.notify.fake import FakeWebhookSender
from tensorgate.platform.fake import FakePlatform, FakeRouter
from tensorgate.reconcile import Reconciler
from tests.unit.engine.conftest import make_spec
from tests.unit.test_reconcile import ScriptedChecker, StepClock


def body(version: str, status: dict[str, Any], generation: int, **analysis: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "ns", "generation": generation},
        "spec": make_spec(version, **analysis).to_dict(),
        "status": status,
    }


def hook(name: str, kind: str) -> dict[str, Any]:
    return {"name": name, "type": kind, "url": f"http://127.0.0.1:9/{name}"}


async def run(
    sender: FakeWebhookSender, hooks: list[dict[str, Any]], until: str, ticks: int = 80
) -> tuple[dict[str, Any], list[Any]]:
    clock = StepClock()
    r = Reconciler(
        FakePlatform(), {"replicas": FakeRouter()}, ScriptedChecker(), clock, webhooks=sender
    )
    status: dict[str, Any] = {}
    for _ in range(20):
        status = (await r.reconcile(body("1", status, 1))).status
        if status.get("phase") == "Promoted":
            break
    events: list[Any] = []
    for _ in range(ticks):
        outcome = await r.reconcile(body("2", status, 2, webhooks=hooks))
        status = outcome.status
        events += outcome.events
        done = status.get("phase") == until and status.get("observedGeneration") == 2
        if done and (until != "Promoted" or status.get("stableVersion") == "2"):
            return status, events
        clock.advance(outcome.requeue_s or 1)
    raise AssertionError(f"stuck in {status.get('phase')}: {status.get('message')}")


async def test_reconcile_webhooks_every_type_in_order_and_in_status() -> None:
    sender = FakeWebhookSender(codes={"confirm": [403, 200], "stop": [404], "after": [502]})
    hooks = [
        hook("before", "pre-rollout"),
        hook("confirm", "confirm-promotion"),
        hook("stop", "rollback"),
        hook("after", "post-rollout"),
        hook("audit", "event"),
    ]
    hooks[2]["url"] += "?token=x"
    status, events = await run(sender, hooks, "Promoted")
    called = [name for name, _ in sender.calls]
    assert called[0] == "before"
    assert called.index("confirm") > called.index("stop")  # after the steps' analysis
    assert called.count("confirm") == 2 and called[-1] == "after"
    assert called.count("stop") == 3 + 1  # 3 steps, then once more while promotion waited
    first = sender.calls[0][1]
    assert (first["name"], first["namespace"], first["phase"]) == ("m", "ns", "Evaluating")
    assert first["hook"] == {"name": "before", "type": "pre-rollout"}
    kinds = {h["type"]: h for h in status["hooks"]}
    assert set(kinds) == {"pre-rollout", "confirm-promotion", "rollback", "post-rollout"}
    assert kinds["confirm-promotion"]["results"][0]["passed"] is True
    assert kinds["post-rollout"]["results"][0]["code"] == 502
    warned = [e for e in events if e.reason == "WebhookFailed"]
    assert len(warned) == 1 and warned[0].warning and "after: HTTP 502" in warned[0].message
    phases = [p["phase"] for _, p in sender.posts]
    assert phases[0] == "Deploying" and phases[-1] == "Promoted"
    assert "Progressing" in phases and "Promoting" in phases
    assert all("token" not in repr(p) for _, p in sender.calls + sender.posts)


async def test_reconcile_pre_rollout_refusal_rolls_back_with_no_traffic() -> None:
    sender = FakeWebhookSender(codes={"before": [409]})
    status, events = await run(sender, [hook("before", "pre-rollout")], "RolledBack")
    assert status.get("canaryWeight", 0) == 0
    assert [e.reason for e in events if e.warning] == ["WebhookFailed"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "WebhookFailed"
    assert "pre-rollout webhook before: HTTP 409" in degraded["message"]
    assert [name for name, _ in sender.calls] == ["before"]
