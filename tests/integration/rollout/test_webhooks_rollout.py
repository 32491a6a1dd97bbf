"""``analysis.webhooks`` through ``tensorgate rollout --local`` (real TensorFlow models on real
local servers) against a real HTTP receiver on 127.0.0.1: when each hook type is called,
what it receives, and what its answer does to the rollout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from tests.integration.conftest import CANDIDATE, GOOD, ModelRepo
from tests.webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.tf
ARGS = ("--json", "--deadline", "240")


def run_rollout(tmp_path: Path, repo: ModelRepo, hooks: list[dict[str, Any]]) -> dict[str, Any]:
    files = []
    for version, analysis in ((GOOD, {}), (CANDIDATE, {"webhooks": hooks})):
        path = tmp_path / f"v{version}.yaml"
        path.write_text(yaml.safe_dump(repo.manifest(version, **analysis)))
        files += ["-f", str(path)]
    proc = subprocess.run(
        [sys.executable, "-m", "tensorgate.cli", "rollout", "--local", *files, *ARGS],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.stdout, proc.stderr[-2000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    result["_output"] = proc.stdout + proc.stderr
    return result


def hook(receiver: Receiver, name: str, kind: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "url": f"{receiver.url}/{name}", **kw}


def candidate_phases(result: dict[str, Any]) -> list[str]:
    return [t["phase"] for t in result["timeline"] if t["version"] == CANDIDATE]


def test_webhooks_gate_and_report_a_promoted_rollout(tmp_path: Path, model_repo: ModelRepo) -> None:
    with webhook_receiver() as receiver:
        receiver.scripts["/flaky"] = [500, 200]  # a retry makes it pass
        receiver.scripts["/confirm"] = [403, 403, 200]  # a manual gate, released at the 3rd ask
        receiver.scripts["/rollback"] = [404]  # never asks for a rollback
        receiver.hang_s["/post"] = 10.0  # never answers in time: reported, changes nothing
        hooks = [
            hook(receiver, "pre", "pre-rollout", metadata={"ticket": "ML-42"}),
            hook(receiver, "flaky", "pre-rollout", retries=2),
            hook(receiver, "confirm", "confirm-promotion"),
            hook(receiver, "rollback", "rollback"),
            hook(receiver, "post", "post-rollout", timeout="500ms", retries=1),
            hook(receiver, "events", "event"),
            hook(receiver, "ce", "event", format="cloudevents"),
            {
                **hook(receiver, "slack", "event", format="slack"),
                "url": f"{receiver.url}/slack?token=s3cr3t",
            },
        ]
        result = run_rollout(tmp_path, model_repo, hooks)
        events_json = [r.json() for r in receiver.at("/events")]
        ce = [from_http_event(HTTPMessage(r.headers, r.body)) for r in receiver.at("/ce")]
        slack = [r.json()["text"] for r in receiver.at("/slack")]
        pre, flaky = receiver.at("/pre"), receiver.at("/flaky")
        confirm, rollback, post = (receiver.at(p) for p in ("/confirm", "/rollback", "/post"))

    assert result["decision"] == "promoted", result["timeline"]
    # pre-rollout: once, before the canary had any traffic, with the gate's numbers.
    (first,) = [r.json() for r in pre]
    assert first["phase"] == "Evaluating" and first["weight"] == 0
    assert first["hook"] == {"name": "pre", "type": "pre-rollout"}
    assert first["metadata"] == {"ticket": "ML-42"}
    assert first["model"] == "digits" and first["version"] == CANDIDATE and first["revision"]
    gate = first["gate"]
    assert gate["n"] == 600 and gate["margin"] == 0.02 and gate["decision"] == "promote"
    assert gate["candidateAccuracy"] is not None and gate["stableAccuracy"] is not None
    assert len(flaky) == 2  # 500, then 200 on the retry
    # confirm-promotion: asked until it said yes, about once per interval (2s), no hot loop.
    assert len(confirm) == 3
    waiting = [t for t in result["timeline"] if "promotion waits for" in t["message"]]
    assert waiting and all(t["phase"] == "Progressing" for t in waiting)
    assert "confirm-promotion webhook confirm" in waiting[0]["message"]
    phases = candidate_phases(result)
    assert phases.index("Promoting") > phases.index("Progressing")
    # rollback: asked with every step's analysis (2 steps) and again while promotion waited.
    assert {r.json()["step"] for r in rollback} == {0, 1} and len(rollback) >= 3
    # post-rollout: called once (2 attempts, both past the 500ms timeout), only reported.
    assert len(post) == 2 and post[0].json()["phase"] == "Promoted"
    warned = [e for e in result["events"] if e["reason"] == "WebhookFailed"]
    assert warned and warned[0]["type"] == "Warning"
    assert "post: no answer from 127.0.0.1" in warned[0]["message"]
    assert "after 2 attempts" in warned[0]["message"]
    hooks_status = {h["type"]: h for h in result["status"]["hooks"]}
    assert hooks_status["post-rollout"]["results"][0]["passed"] is False
    # event: every phase change, in order, in each format.
    seen = [e["phase"] for e in events_json]
    for phase in (
        "Deploying",
        "SmokeTesting",
        "Evaluating",
        "Progressing",
        "Promoting",
        "Promoted",
    ):
        assert phase in seen, seen
    assert seen.index("Progressing") < seen.index("Promoted")
    assert [e.get_data()["phase"] for e in ce] == seen  # type: ignore[index]
    assert all(e.get_type() == "dev.tensorgate.rollout.event" for e in ce)
    assert any("*default/digits* Promoted" in t for t in slack), slack
    assert "s3cr3t" not in result["_output"]


def test_rollback_webhook_2xx_rolls_back(tmp_path: Path, model_repo: ModelRepo) -> None:
    with webhook_receiver() as receiver:
        result = run_rollout(tmp_path, model_repo, [hook(receiver, "stop", "rollback")])
        asked = receiver.at("/stop")
    assert result["decision"] == "rolled back"
    assert len(asked) == 1 and asked[0].json()["phase"] == "Progressing"
    degraded = next(c for c in result["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "WebhookRollback"
    assert "rollback webhook stop asked for a rollback" in degraded["message"]


def test_pre_rollout_webhook_that_hangs_rolls_back_before_any_traffic(
    tmp_path: Path, model_repo: ModelRepo
) -> None:
    with webhook_receiver() as receiver:
        receiver.hang_s["/gate"] = 10.0
        hooks = [hook(receiver, "gate", "pre-rollout", timeout="1s", retries=1)]
        result = run_rollout(tmp_path, model_repo, hooks)
        asked = receiver.at("/gate")
    assert result["decision"] == "rolled back"
    assert len(asked) == 2  # one retry, then it counts as a failed check
    assert "Progressing" not in candidate_phases(result)
    assert result["canaryUserRequestsServed"] == 0
    degraded = next(c for c in result["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "WebhookFailed"
    assert "pre-rollout webhook gate: no answer from 127.0.0.1" in degraded["message"]
    assert "within 1s after 2 attempts" in degraded["message"]
