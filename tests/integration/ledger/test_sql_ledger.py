"""``SqlLedger`` on real databases: SQLite file and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from tensorgate.errors import LedgerError
from tensorgate.ledger.models import GateResultRow, PhaseChangeRow, Rollout
from tensorgate.ledger.sql import SqlLedger, open_sql_ledger
from tests.unit.ledger.scenario import NAME, NAMESPACE, full_story, rollout, spec


@pytest.fixture
async def ledger(dsn: str) -> AsyncIterator[SqlLedger]:
    ledger = await open_sql_ledger(dsn, timeout_s=5)
    yield ledger
    await ledger.close()


def _counts(ledger: SqlLedger) -> tuple[int, int, int]:
    with ledger.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (Rollout, GateResultRow, PhaseChangeRow)
        )


async def _play(ledger: SqlLedger) -> None:
    for old, new, sp in full_story():
        await ledger.record_transition(NAMESPACE, NAME, old, new, sp)


async def test_migrations_create_schema_at_head(ledger: SqlLedger) -> None:
    tables = set(inspect(ledger.engine).get_table_names())
    assert {"rollouts", "gate_results", "phase_changes", "alembic_version"} <= tables
    with ledger.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == (
            "0002_verdict_inputs"
        )


async def test_reopen_runs_no_migration_and_keeps_rows(ledger: SqlLedger, dsn: str) -> None:
    await _play(ledger)
    again = await open_sql_ledger(dsn)
    try:
        assert len(await again.history(NAMESPACE, NAME)) == 3
    finally:
        await again.close()


async def test_full_story_history_and_promoted_spec(ledger: SqlLedger) -> None:
    await _play(ledger)
    history = await ledger.history(NAMESPACE, NAME)
    assert [(r.candidate_version, r.decision) for r in history] == [
        ("3", "RolledBack"),
        ("2", "Promoted"),
        ("1", "Promoted"),
    ]
    assert history[0].gate is not None and history[0].gate.samples == 1000
    assert history[0].gate.smoke[0]["name"] == "signature"
    assert history[1].started_at.tzinfo is not None
    assert await ledger.promoted_spec(NAMESPACE, NAME, "2") == spec("2")
    assert await ledger.promoted_spec(NAMESPACE, NAME, "3") is None
    assert _counts(ledger) == (3, 2, 12)  # 2 + 6 + 4 phase changes


async def test_history_survives_resource_deletion(ledger: SqlLedger) -> None:
    """Deleting the CR touches no SQL: a new resource of the same name sees the old rows."""
    await _play(ledger)
    # The resource is deleted and created again: its status starts empty.
    for _old, new, sp in rollout("1", "4", 40, passes=True, history=[])[:1]:
        await ledger.record_transition(NAMESPACE, NAME, {}, new, sp)
    versions = [r.candidate_version for r in await ledger.history(NAMESPACE, NAME)]
    assert versions == ["4", "3", "2", "1"]
    assert await ledger.promoted_spec(NAMESPACE, NAME, "2") == spec("2")


async def test_failure_mid_transaction_writes_nothing(ledger: SqlLedger) -> None:
    """The rollout row is inserted, then writing the phase change fails: both roll back."""
    old, new, sp = full_story()[0]
    executed: list[str] = []

    def fail_on_phase_change(conn: object, cursor: object, statement: str, *args: object) -> None:
        executed.append(statement.split()[0] + " " + statement.split()[2])
        if statement.startswith("INSERT INTO phase_changes"):
            raise IntegrityError(statement, None, Exception("injected failure"))

    event.listen(ledger.engine, "before_cursor_execute", fail_on_phase_change)
    try:
        with pytest.raises(LedgerError, match="injected failure"):
            await ledger.record_transition(NAMESPACE, NAME, old, new, sp)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", fail_on_phase_change)
    assert "INSERT rollouts" in executed  # the failure really came after a written row
    assert _counts(ledger) == (0, 0, 0)
    assert await ledger.history(NAMESPACE, NAME) == []
    # The same transition written again succeeds completely.
    await ledger.record_transition(NAMESPACE, NAME, old, new, sp)
    assert _counts(ledger) == (1, 0, 1)
