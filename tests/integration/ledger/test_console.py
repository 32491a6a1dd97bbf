"""``tensorgate history`` / ``revert`` through the installed console script on each real
database (SQLite file and a real PostgreSQL server); revert patches KMock's API server."""

from __future__ import annotations

import json
from pathlib import Path

import kmock
import pytest
from sqlalchemy import insert, inspect, text

from tensorgate.ledger.models import Rollout
from tensorgate.ledger.sql import make_engine, migrate, open_sql_ledger
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


async def test_history_json_and_verify(dsn: str) -> None:
    await fill(dsn)
    result = await tensorgate_cli(
        "history", NAME, "-n", NAMESPACE, "--dsn", dsn, "--json", "--verify"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [(d["candidateVersion"], d["decision"]) for d in data] == [
        ("3", "RolledBack"),
        ("2", "Promoted"),
        ("1", "Promoted"),
    ]
    assert [d.get("verification", {}).get("outcome") for d in data] == ["match", "match", None]
    assert data[0]["gate"]["inputs"]["gate"]["upperBound"] == 0.85


async def test_verify_fails_on_a_tampered_verdict(dsn: str) -> None:
    await fill(dsn)
    await expect_verify_fails_on(dsn, await tamper_verdict(dsn))


@pytest.fixture
def api(kmock: kmock.KubernetesEmulator, tmp_path: Path) -> tuple[KubeClient, Path]:
    return kmock_api(kmock, tmp_path)


async def test_revert_puts_a_promoted_version_back(dsn: str, api: tuple[KubeClient, Path]) -> None:
    await fill(dsn)
    await revert_and_check(dsn, api)


async def test_migration_0002_keeps_old_rows_which_verify_reports_unverifiable(dsn: str) -> None:
    """A ledger at 0001 with a gate result upgrades in place; the old row has no inputs,
    --verify says so and does not fail; new rows written afterwards verify."""
    engine = make_engine(dsn)
    try:
        migrate(engine, "0001_initial")
        with engine.begin() as conn:
            rollout_id = conn.execute(
                insert(Rollout.__table__)
                .values(
                    namespace=NAMESPACE,
                    model="old",
                    rollout_key="0-old",
                    candidate_version="0",
                    stable_version=None,
                    started_at=text("CURRENT_TIMESTAMP"),
                    reason="",
                    spec={},
                    decision="Promoted",
                )
                .returning(Rollout.__table__.c.id)
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO gate_results (rollout_id, decision, upper_bound, samples, "
                    "smoke, recorded_at) VALUES (:id, 'promote', 0.01, 500, '[]', "
                    "CURRENT_TIMESTAMP)"
                ),
                {"id": rollout_id},
            )
        assert "inputs" not in {c["name"] for c in inspect(engine).get_columns("gate_results")}
    finally:
        engine.dispose()
    ledger = await open_sql_ledger(dsn)  # upgrades to head
    try:
        with ledger.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        assert version == "0002_verdict_inputs"
        (old,) = await ledger.history(NAMESPACE, "old")
        assert old.gate is not None and old.gate.inputs is None and old.gate.samples == 500
    finally:
        await ledger.close()
    result = await tensorgate_cli("history", "old", "-n", NAMESPACE, "--dsn", dsn, "--verify")
    assert result.exit_code == 0, result.output
    assert "UNVERIFIABLE" in result.stdout and "written before 0002" in result.stdout
