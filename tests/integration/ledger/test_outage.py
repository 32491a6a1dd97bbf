"""A real PostgreSQL stopped mid-rollout (``pg_ctl stop -m fast``) loses no transition.

The operator's ledger (``open_ledger``: ``SqlLedger`` behind ``DurableLedger``) keeps
recording while the server is down; once it is started again every transition is in the
database exactly once, in order: first with the process alive (the outbox's retry task
writes it), then across a process restart (the spool file is replayed at open).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tensorgate.ledger.durable import SPOOL_FILE, DurableLedger
from tensorgate.ledger.fake import FakeLedger
from tensorgate.ledger.models import GateResultRow, PhaseChangeRow, Rollout
from tensorgate.ledger.sql import open_ledger, open_sql_ledger
from tests.helpers import eventually
from tests.integration.ledger.conftest import RestartablePostgres
from tests.unit.ledger.scenario import NAME, NAMESPACE, Status, full_story

pytestmark = pytest.mark.postgres

STORY = full_story()  # 12 transitions: v1 first deploy, v2 promoted, v3 rolled back


async def _open(dsn: str, spool: Path) -> DurableLedger:
    return await open_ledger(dsn, timeout_s=2, retries=1, spool_dir=spool, retry_s=0.2)


async def _record(ledger: DurableLedger, part: list[tuple[Status, Status, dict[str, Any]]]) -> None:
    for old, new, sp in part:
        await ledger.record_transition(NAMESPACE, NAME, old, new, sp)  # never raises


async def test_postgres_outage_mid_rollout_loses_no_transition(
    restartable_postgres: RestartablePostgres, tmp_path: Path
) -> None:
    pg, spool = restartable_postgres, tmp_path / "spool"
    dsn = pg.dsn("ledger")
    ledger = await _open(dsn, spool)
    closed = False
    try:
        await _record(ledger, STORY[:3])  # v1 deployed, v2's rollout begins
        pg.stop()
        await _record(ledger, STORY[3:7])  # smoke, evaluation, gate: the database is gone
        assert ledger.pending == 4
        assert len((spool / SPOOL_FILE).read_text().splitlines()) == 4
        pg.start()
        await eventually(
            lambda: _empty(ledger), timeout_s=30, every_s=0.1, what="the outbox written"
        )
        pg.stop()
        await _record(ledger, STORY[7:])  # the rest of v2 and all of v3, then a restart
        await ledger.close()
        closed = True
        assert len((spool / SPOOL_FILE).read_text().splitlines()) == len(STORY) - 7
        pg.start()
        again = await _open(dsn, spool)  # the spool is replayed at open
        try:
            assert again.pending == 0
        finally:
            await again.close()
    finally:
        if not closed:
            await ledger.close()

    reference = FakeLedger()
    for old, new, sp in STORY:
        await reference.record_transition(NAMESPACE, NAME, old, new, sp)
    sql = await open_sql_ledger(dsn)
    try:
        with sql.engine.connect() as conn:
            counts = tuple(
                conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (Rollout, GateResultRow, PhaseChangeRow)
            )
        history = await sql.history(NAMESPACE, NAME)
    finally:
        await sql.close()
    assert counts == (3, 2, 12)  # every transition exactly once
    expected = await reference.history(NAMESPACE, NAME)
    assert [
        (r.candidate_version, r.decision, [(p.from_phase, p.to_phase, p.at) for p in r.phases])
        for r in history
    ] == [
        (r.candidate_version, r.decision, [(p.from_phase, p.to_phase, p.at) for p in r.phases])
        for r in expected
    ]


async def _empty(ledger: DurableLedger) -> bool:
    return ledger.pending == 0


async def test_an_operator_started_during_the_outage_writes_when_postgres_is_back(
    restartable_postgres: RestartablePostgres, tmp_path: Path
) -> None:
    """The schema is not there yet either: it is migrated when the database is back."""
    pg = restartable_postgres
    pg.stop()
    ledger = await _open(pg.dsn("ledger"), tmp_path / "spool")
    try:
        await _record(ledger, STORY[:4])
        assert ledger.pending == 4
        pg.start()
        await eventually(lambda: _empty(ledger), timeout_s=30, what="the outbox written")
        history = await ledger.history(NAMESPACE, NAME)
    finally:
        await ledger.close()
    assert [(r.candidate_version, len(r.phases)) for r in history] == [("2", 2), ("1", 2)]
