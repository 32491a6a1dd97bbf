"""``DurableLedger``: nothing lost to an outage, nothing written twice, bounded, loud.

Fast tests on ``FakeLedger`` (its ``down`` flag is an exact outage); the real PostgreSQL
stopped mid-rollout is ``tests/integration/ledger/test_outage.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tensorgate.errors import LedgerError
from tensorgate.ledger.durable import REJECTED_FILE, SPOOL_FILE, DurableLedger
from tensorgate.ledger.fake import FakeLedger
from tensorgate.ledger.sql import open_ledger
from tests.helpers import eventually
from tests.unit.ledger.scenario import NAME, NAMESPACE, full_story

STORY = full_story()


def _phases(fake: FakeLedger) -> list[tuple[str, str]]:
    return [
        (r.candidate_version, p.to_phase)
        for r in sorted(fake.rollouts, key=lambda r: r.id)
        for p in r.phases
    ]


async def _all_written(fake: FakeLedger) -> FakeLedger:
    reference = FakeLedger()
    for old, new, sp in STORY:
        await reference.record_transition(NAMESPACE, NAME, old, new, sp)
    assert _phases(fake) == _phases(reference)
    assert [(r.candidate_version, r.decision) for r in fake.rollouts] == [
        (r.candidate_version, r.decision) for r in reference.rollouts
    ]
    return reference


def _metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_an_outage_mid_story_loses_nothing_and_keeps_the_order() -> None:
    """Before the outbox, a write during an outage raised LedgerError and the handler
    dropped the transition ("transition not recorded")."""
    fake, registry = FakeLedger(), CollectorRegistry()
    ledger = DurableLedger(fake, retry_s=0.05, registry=registry)
    for i, (old, new, sp) in enumerate(STORY):
        fake.down = 4 <= i < 10  # the database is gone for six transitions
        await ledger.record_transition(NAMESPACE, NAME, old, new, sp)  # never raises
        if i == 6:
            assert ledger.pending == 3
            assert _metric(registry, "tensorgate_ledger_outbox_pending") == 3
    await eventually(lambda: _ready(ledger), timeout_s=10, what="outbox empty")
    await _all_written(fake)
    assert _metric(registry, "tensorgate_ledger_outbox_pending") == 0
    await ledger.close()


async def _ready(ledger: DurableLedger) -> bool:
    return ledger.pending == 0


async def test_while_down_a_transition_is_only_queued() -> None:
    """A known outage costs a tick no database round trip: the retry task writes."""
    fake = FakeLedger()
    ledger = DurableLedger(fake, retry_s=3600)
    fake.down = True
    await ledger.record_transition(NAMESPACE, NAME, *STORY[0])
    writes_before = fake.transitions
    await ledger.record_transition(NAMESPACE, NAME, *STORY[1])
    assert ledger.pending == 2 and fake.transitions == writes_before
    fake.down = False
    assert await ledger.flush()
    assert ledger.pending == 0 and fake.transitions == 2
    await ledger.close()


async def test_replaying_a_written_transition_writes_nothing_new(sqlite_dsn: str) -> None:
    """A write that landed but whose answer was lost is replayed: no duplicate rows."""
    ledger = await open_ledger(sqlite_dsn)
    try:
        for old, new, sp in STORY:
            await ledger.inner.record_transition(NAMESPACE, NAME, old, new, sp)
        once = await ledger.history(NAMESPACE, NAME)
        for old, new, sp in STORY:  # the whole story again, as a replayed spool would
            await ledger.record_transition(NAMESPACE, NAME, old, new, sp)
        twice = await ledger.history(NAMESPACE, NAME)
        assert [r.to_dict() for r in twice] == [r.to_dict() for r in once]
    finally:
        await ledger.close()


async def test_the_spool_survives_a_restart(tmp_path: Path) -> None:
    fake = FakeLedger()
    fake.down = True
    first = await DurableLedger.open(fake, spool_dir=tmp_path, retry_s=3600)
    for old, new, sp in STORY:
        await first.record_transition(NAMESPACE, NAME, old, new, sp)
    await first.close()  # the process ends with the database still down
    lines = (tmp_path / SPOOL_FILE).read_text().splitlines()
    assert len(lines) == len(STORY)
    fake.down = False
    second = await DurableLedger.open(fake, spool_dir=tmp_path, retry_s=3600)
    assert second.pending == 0
    assert (tmp_path / SPOOL_FILE).read_text() == ""
    await _all_written(fake)
    await second.close()


async def test_a_torn_spool_line_is_skipped_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeLedger()
    fake.down = True
    first = await DurableLedger.open(fake, spool_dir=tmp_path, retry_s=3600)
    await first.record_transition(NAMESPACE, NAME, *STORY[0])
    await first.close()
    with (tmp_path / SPOOL_FILE).open("a") as out:
        out.write('{"namespace": "ml", "na')  # the crash came mid-append
    fake.down = False
    with caplog.at_level(logging.ERROR):
        second = await DurableLedger.open(fake, spool_dir=tmp_path)
    assert "unreadable, skipped" in caplog.text
    assert second.pending == 0 and fake.transitions == 1
    await second.close()


async def test_a_full_outbox_drops_loudly_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    fake, registry = FakeLedger(), CollectorRegistry()
    ledger = DurableLedger(fake, max_pending=3, retry_s=3600, registry=registry)
    fake.down = True
    with caplog.at_level(logging.ERROR):
        for old, new, sp in STORY[:5]:
            await ledger.record_transition(NAMESPACE, NAME, old, new, sp)
    assert ledger.pending == 3 and ledger.dropped == 2
    assert _metric(registry, "tensorgate_ledger_outbox_dropped_total", reason="full") == 2
    assert "ledger outbox FULL" in caplog.text and "DROPPED" in caplog.text
    await ledger.close()


async def test_a_rejected_transition_is_set_aside_and_does_not_block(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-outage error fails on every retry: it must not hold the queue forever."""
    fake, registry = FakeLedger(), CollectorRegistry()
    ledger = DurableLedger(fake, spool_dir=tmp_path, registry=registry)
    fake.fail_next = LedgerError("ledger write failed: constraint")
    with caplog.at_level(logging.ERROR):
        await ledger.record_transition(NAMESPACE, NAME, *STORY[0])
    await ledger.record_transition(NAMESPACE, NAME, *STORY[1])
    assert ledger.pending == 0 and fake.transitions == 1
    assert "constraint" in (tmp_path / REJECTED_FILE).read_text()
    assert _metric(registry, "tensorgate_ledger_outbox_dropped_total", reason="rejected") == 1
    assert "ledger rejected the transition" in caplog.text
    await ledger.close()


async def test_two_ledgers_share_one_registry() -> None:
    registry = CollectorRegistry()
    a = DurableLedger(FakeLedger(), registry=registry)
    b = DurableLedger(FakeLedger(), registry=registry)
    assert a.metrics is b.metrics
    await a.close()
    await b.close()


async def test_an_unwritable_spool_dir_names_the_flag(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LedgerError, match="--ledger-spool-dir"):
        DurableLedger(FakeLedger(), spool_dir=blocker / "spool")


async def test_a_spool_found_while_the_database_is_still_down_is_retried(tmp_path: Path) -> None:
    fake = FakeLedger()
    fake.down = True
    first = await DurableLedger.open(fake, spool_dir=tmp_path, retry_s=3600)
    await first.record_transition(NAMESPACE, NAME, *STORY[0])
    await first.close()
    second = await DurableLedger.open(fake, spool_dir=tmp_path, retry_s=0.05)
    assert second.pending == 1
    fake.down = False
    await eventually(lambda: _ready(second), timeout_s=10, what="spool written by the retry")
    assert fake.transitions == 1
    await second.close()


async def test_a_spool_that_cannot_be_written_keeps_the_transition_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full or read-only disk must not turn a transition into an operator error."""
    fake = FakeLedger()
    ledger = DurableLedger(fake, spool_dir=tmp_path, retry_s=3600)
    (tmp_path / SPOOL_FILE).mkdir()  # the spool file cannot be opened
    fake.down = True
    with caplog.at_level(logging.ERROR):
        await ledger.record_transition(NAMESPACE, NAME, *STORY[0])
    assert "kept in memory only" in caplog.text and ledger.pending == 1
    fake.down = False
    assert await ledger.flush() and fake.transitions == 1
    await ledger.close()
