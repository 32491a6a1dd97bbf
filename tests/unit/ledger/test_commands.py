"""``tensorgate history`` and ``tensorgate revert`` through the installed console script, on
SQLite (revert against KMock's API server). The same on PostgreSQL:
``tests/integration/ledger/test_console.py``."""

from __future__ import annotations

import json
from pathlib import Path

import kmock
import pytest

from tensorgate.cli import app
from tensorgate.platform.kubernetes.client import KubeClient
from tests.unit.ledger.console import (
    expect_verify_fails_on,
    fill,
    kmock_api,
    revert_and_check,
    tamper_verdict,
    tensorgate_cli,
)
from tests.unit.ledger.scenario import NAME, NAMESPACE


def test_the_real_app_registers_history_and_revert() -> None:
    """cli.py once registered a module that did not exist, and the commands silently vanished."""
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    assert {"history", "revert"} <= names


async def test_history_prints_versions_accuracies_decisions(sqlite_dsn: str) -> None:
    await fill(sqlite_dsn)
    result = await tensorgate_cli("history", NAME, "-n", NAMESPACE, "--dsn", sqlite_dsn)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["STARTED", "VERSION", "FROM", "DECISION"]
    assert "3" in lines[1] and "RolledBack" in lines[1] and "0.1100" in lines[1]
    assert "Promoted" in lines[2] and "0.9500" in lines[2]


async def test_history_json_has_gate_inputs_and_phases(sqlite_dsn: str) -> None:
    await fill(sqlite_dsn)
    result = await tensorgate_cli(
        "history", NAME, "-n", NAMESPACE, "--dsn", sqlite_dsn, "--json", "--limit", "2"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [d["candidateVersion"] for d in data] == ["3", "2"]
    assert data[0]["gate"]["canaryAccuracy"] == 0.11
    inputs = data[0]["gate"]["inputs"]
    assert inputs["gate"]["samples"] == 1000 and inputs["gate"]["decision"] == "rollback"
    assert inputs["spec"] == {"maxAccuracyDrop": 0.02, "confidence": 0.95}
    assert data[1]["phases"][-1]["to"] == "Promoted"


async def test_history_reads_the_dsn_from_the_environment(sqlite_dsn: str) -> None:
    await fill(sqlite_dsn)
    result = await tensorgate_cli(
        "history", NAME, "-n", NAMESPACE, env={"TENSORGATE_LEDGER_DSN": sqlite_dsn}
    )
    assert result.exit_code == 0, result.output
    assert "RolledBack" in result.stdout


async def test_history_of_unknown_model_says_so(sqlite_dsn: str) -> None:
    result = await tensorgate_cli("history", "nope", "--dsn", sqlite_dsn)
    assert result.exit_code == 0, result.output
    assert "no rollouts of default/nope" in result.stdout


async def test_history_verify_replays_every_stored_verdict(sqlite_dsn: str) -> None:
    await fill(sqlite_dsn)
    result = await tensorgate_cli("history", NAME, "-n", NAMESPACE, "--dsn", sqlite_dsn, "--verify")
    assert result.exit_code == 0, result.output
    verdicts = [line for line in result.stdout.splitlines() if line.startswith("MATCH")]
    assert len(verdicts) == 2, result.stdout  # v2 promote, v3 rollback; v1 had no gate
    assert "stored rollback, replayed rollback" in result.stdout
    assert "stored promote, replayed promote" in result.stdout


async def test_history_verify_fails_naming_a_tampered_row(sqlite_dsn: str) -> None:
    """A stored verdict its inputs do not support (v3's bound 0.85 > margin 0.02, yet
    'promote') fails --verify with exit 1 and names the rollout."""
    await fill(sqlite_dsn)
    await expect_verify_fails_on(sqlite_dsn, await tamper_verdict(sqlite_dsn))


async def test_revert_never_promoted_version_exits_2(sqlite_dsn: str) -> None:
    await fill(sqlite_dsn)
    result = await tensorgate_cli("revert", NAME, "--to", "3", "-n", NAMESPACE, "--dsn", sqlite_dsn)
    assert result.exit_code == 2, result.output
    assert "never promoted (promoted versions: 1, 2)" in result.stderr


@pytest.fixture
def api(kmock: kmock.KubernetesEmulator, tmp_path: Path) -> tuple[KubeClient, Path]:
    return kmock_api(kmock, tmp_path)


async def test_revert_patches_spec_model_from_ledger(
    sqlite_dsn: str, api: tuple[KubeClient, Path]
) -> None:
    await fill(sqlite_dsn)
    await revert_and_check(sqlite_dsn, api)


async def test_revert_missing_resource_exits_1(
    sqlite_dsn: str, api: tuple[KubeClient, Path]
) -> None:
    client, kubeconfig = api
    await client.aclose()
    await fill(sqlite_dsn)
    result = await tensorgate_cli(
        "revert", NAME, "--to", "1", "-n", NAMESPACE, "--dsn", sqlite_dsn,
        "--kubeconfig", str(kubeconfig),
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "HTTP 404" in result.stderr


async def test_run_has_the_spool_flag() -> None:
    result = await tensorgate_cli("run", "--help")
    assert result.exit_code == 0, result.output
    assert "--ledger-spool-dir" in result.stdout
