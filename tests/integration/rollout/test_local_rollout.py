"""`tensorgate rollout --local`: the operator's engine and checks on real local servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import BROKEN, CANDIDATE, GOOD, ModelRepo

pytestmark = pytest.mark.tf


def run_rollout(tmp_path: Path, repo: ModelRepo, v2: str) -> tuple[int, dict[str, object]]:
    files = []
    for version in (GOOD, v2):
        path = tmp_path / f"v{version}.yaml"
        path.write_text(yaml.safe_dump(repo.manifest(version)))
        files += ["-f", str(path)]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tensorgate.cli",
            "rollout",
            "--local",
            *files,
            "--json",
            "--deadline",
            "240",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.stdout, proc.stderr[-2000:]
    return proc.returncode, json.loads(proc.stdout)


def phases(result: dict[str, object]) -> list[str]:
    timeline = result["timeline"]
    assert isinstance(timeline, list)
    return [t["phase"] for t in timeline if t["version"] != GOOD]


def test_rollout_local_promotes_good_candidate_through_every_step(
    tmp_path: Path, model_repo: ModelRepo
) -> None:
    code, result = run_rollout(tmp_path, model_repo, CANDIDATE)
    assert code == 0, result
    assert result["decision"] == "promoted"
    seen = phases(result)
    for phase in [
        "Deploying",
        "SmokeTesting",
        "Evaluating",
        "Progressing",
        "Promoting",
        "Promoted",
    ]:
        assert phase in seen, seen
    weights = [t["weight"] for t in result["timeline"] if t["phase"] == "Progressing"]  # type: ignore[index, union-attr]
    assert weights[0] == 50 and 100 in weights
    served = result["canaryUserRequestsServed"]
    assert isinstance(served, int) and served > 0  # the canary really took user traffic
    status = result["status"]
    assert isinstance(status, dict) and status["stableVersion"] == CANDIDATE
    assert status["history"][0]["decision"] == "Promoted"


def test_rollout_local_rolls_back_silent_failure_before_any_user_request(
    tmp_path: Path, model_repo: ModelRepo
) -> None:
    code, result = run_rollout(tmp_path, model_repo, BROKEN)
    assert code == 1, result
    assert result["decision"] == "rolled back"
    assert "Progressing" not in phases(result)
    assert result["canaryUserRequestsServed"] == 0
    sent = result["userRequests"]
    assert isinstance(sent, dict) and sent.get("canary", 0) == 0 and sent["stable"] > 0
    status = result["status"]
    assert isinstance(status, dict)
    assert status["stableVersion"] == GOOD
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "AccuracyGateFailed"
    assert "maxAccuracyDrop" in degraded["message"]
    gate = status["gate"]
    assert gate["canaryAccuracy"] < 0.3 < gate["stableAccuracy"]
