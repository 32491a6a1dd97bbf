"""The Ledger contract, on the fake and on SQLite (PostgreSQL: tests/integration/ledger)."""

from __future__ import annotations

import pytest

from tensorgate.errors import LedgerError
from tensorgate.ledger.base import Ledger, LedgerUnavailable
from tensorgate.ledger.fake import FakeLedger
from tensorgate.ledger.sql import normalise_dsn, open_ledger, open_sql_ledger
from tests.unit.ledger.scenario import NAME, NAMESPACE, full_story, spec


async def _play(ledger: Ledger) -> None:
    for old, new, sp in full_story():
        await ledger.record_transition(NAMESPACE, NAME, old, new, sp)


async def test_ledger_history_lists_rollouts_newest_first(ledger: Ledger) -> None:
    await _play(ledger)
    history = await ledger.history(NAMESPACE, NAME)
    assert [(r.candidate_version, r.decision) for r in history] == [
        ("3", "RolledBack"),
        ("2", "Promoted"),
        ("1", "Promoted"),
    ]
    v3, v2, v1 = history
    assert v3.stable_version == "2" and v3.gate is not None
    assert v3.gate.canary_accuracy == 0.11 and v3.gate.upper_bound == 0.85
    assert v3.reason.startswith("AccuracyGateFailed")
    assert [p.to_phase for p in v2.phases] == [
        "Deploying",
        "SmokeTesting",
        "Evaluating",
        "Progressing",
        "Promoting",
        "Promoted",
    ]
    assert v2.phases[0].from_phase == "Promoted"
    assert v1.stable_version is None and v1.reason == "first deploy"
    assert v2.finished_at is not None and v3.finished_at is not None


async def test_ledger_history_limit_and_other_models(ledger: Ledger) -> None:
    await _play(ledger)
    assert len(await ledger.history(NAMESPACE, NAME, limit=2)) == 2
    assert await ledger.history(NAMESPACE, "other") == []
    assert await ledger.history("elsewhere", NAME) == []


async def test_ledger_promoted_spec_only_for_promoted_versions(ledger: Ledger) -> None:
    await _play(ledger)
    assert await ledger.promoted_spec(NAMESPACE, NAME, "2") == spec("2")
    assert await ledger.promoted_spec(NAMESPACE, NAME, "1") == spec("1")
    assert await ledger.promoted_spec(NAMESPACE, NAME, "3") is None  # rolled back
    assert await ledger.promoted_spec(NAMESPACE, NAME, "9") is None


async def test_ledger_repeated_transition_is_harmless(ledger: Ledger) -> None:
    story = full_story()
    for old, new, sp in story[:3]:
        await ledger.record_transition(NAMESPACE, NAME, old, new, sp)
    old, new, sp = story[2]
    await ledger.record_transition(NAMESPACE, NAME, old, new, sp)  # a retried tick
    assert len(await ledger.history(NAMESPACE, NAME)) == 2


async def test_fake_ledger_failure_writes_nothing() -> None:
    fake = FakeLedger()
    fake.fail_next = LedgerError("boom")
    old, new, sp = full_story()[0]
    with pytest.raises(LedgerError):
        await fake.record_transition(NAMESPACE, NAME, old, new, sp)
    assert await fake.history(NAMESPACE, NAME) == []


def test_normalise_dsn_means_psycopg3() -> None:
    assert normalise_dsn("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_dsn("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_dsn("sqlite:///x.db") == "sqlite:///x.db"


async def test_open_ledger_unknown_scheme_is_ledger_error() -> None:
    with pytest.raises(LedgerError, match="unsupported ledger DSN"):
        await open_ledger("mysql://u@h/db")


UNREACHABLE = "postgresql+psycopg://u@127.0.0.1:9/db"  # port 9 on loopback: nothing listens


async def test_open_sql_ledger_unreachable_postgres_is_ledger_unavailable() -> None:
    # Connect fails fast, retried a bounded number of times.
    with pytest.raises(LedgerUnavailable, match="attempt"):
        await open_sql_ledger(UNREACHABLE, timeout_s=2, retries=1)


async def test_the_operator_ledger_starts_while_postgres_is_unreachable() -> None:
    """Before the outbox the operator could not start during a ledger outage; now it starts,
    keeps the transition, and its reads say the ledger is unavailable."""
    ledger = await open_ledger(UNREACHABLE, timeout_s=2, retries=0, retry_s=3600)
    try:
        old, new, sp = full_story()[0]
        await ledger.record_transition(NAMESPACE, NAME, old, new, sp)
        assert ledger.pending == 1
        with pytest.raises(LedgerUnavailable):
            await ledger.history(NAMESPACE, NAME)
    finally:
        await ledger.close()
