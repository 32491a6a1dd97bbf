"""``SqlLedger``: the ledger on SQLAlchemy 2 (SQLite file by default, PostgreSQL via a DSN).

SQLAlchemy runs synchronously in a worker thread (``asyncio.to_thread``); every write of a
transition is one transaction. Connections time out (SQLite's busy timeout, PostgreSQL's
``connect_timeout`` and ``statement_timeout``); operational errors are retried a bounded
number of times (a retried transaction is whole or absent), then raised as ``LedgerError``.

``open_sql_ledger(dsn)`` applies the Alembic migrations (``upgrade head``) before first use;
``open_ledger(dsn)`` (what the operator uses) wraps it in the outbox of
:mod:`tensorgate.ledger.durable`, so a transition the database cannot take now is written
when it is back. Writing one transition twice writes nothing new (phase changes are keyed by
rollout, time and phases; rollouts by key; gate results are upserted).
DSNs: ``sqlite:///path/ledger.db``, ``postgresql+psycopg://user@host:port/db`` (a plain
``postgresql://`` is taken to mean psycopg 3).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from prometheus_client import CollectorRegistry
from sqlalchemy import ColumnElement, Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from tensorgate.errors import LedgerError
from tensorgate.ledger.base import (
    PROMOTED,
    GateResult,
    LedgerUnavailable,
    PhaseChange,
    RolloutRecord,
    StatusLike,
    TransitionPlan,
    plan_transition,
)
from tensorgate.ledger.durable import DEFAULT_RETRY_S, DurableLedger
from tensorgate.ledger.models import GateResultRow, PhaseChangeRow, Rollout

logger = logging.getLogger(__name__)

T = TypeVar("T")
MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_TIMEOUT_S = 10.0


def default_dsn() -> str:
    """``sqlite:///$XDG_DATA_HOME/tensorgate/ledger.db`` (``~/.local/share`` by default)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{base / 'tensorgate' / 'ledger.db'}"


def normalise_dsn(dsn: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 here."""
    for prefix in ("postgresql://", "postgres://"):
        if dsn.startswith(prefix):
            return "postgresql+psycopg://" + dsn[len(prefix) :]
    return dsn


def make_engine(dsn: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Engine:
    """An engine with timeouts; creates the folder of a SQLite file."""
    url = make_url(normalise_dsn(dsn))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": timeout_s, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.get_backend_name() == "postgresql":
        ms = int(timeout_s * 1000)
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_timeout=timeout_s,
            connect_args={
                "connect_timeout": max(1, int(timeout_s)),
                "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
            },
        )
    raise LedgerError(
        f"unsupported ledger DSN scheme {url.drivername!r} (expected sqlite:/// or "
        "postgresql+psycopg://)"
    )


def migrate(engine: Engine, target: str = "head") -> None:
    """Apply the Alembic migrations up to ``target`` (default: all), configured in code."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, target)
        connection.commit()


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _record(row: Rollout) -> RolloutRecord:
    gate = row.gate
    return RolloutRecord(
        id=row.id,
        namespace=row.namespace,
        model=row.model,
        rollout_key=row.rollout_key,
        candidate_version=row.candidate_version,
        stable_version=row.stable_version,
        started_at=_aware(row.started_at) or datetime.now(UTC),
        finished_at=_aware(row.finished_at),
        decision=row.decision,
        reason=row.reason,
        gate=None
        if gate is None
        else GateResult(
            stable_accuracy=gate.stable_accuracy,
            canary_accuracy=gate.canary_accuracy,
            drop=gate.drop,
            upper_bound=gate.upper_bound,
            p_value=gate.p_value,
            samples=gate.samples,
            decision=gate.decision,
            smoke_passed=gate.smoke_passed,
            smoke=tuple(gate.smoke or ()),
            inputs=gate.inputs,
        ),
        phases=tuple(
            PhaseChange(_aware(p.at) or datetime.now(UTC), p.from_phase, p.to_phase, p.message)
            for p in row.phases
        ),
    )


class SqlLedger:
    """Implements ``Ledger`` on a SQLAlchemy engine. Build it with :func:`open_ledger`."""

    def __init__(
        self,
        engine: Engine,
        *,
        retries: int = 3,
        backoff_s: float = 0.2,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._clock = clock
        self._migrated = False
        self._migrating = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Apply the migrations once (blocking; bounded retries), before the first statement.

        Raises ``LedgerUnavailable`` while the database cannot be reached; the next call
        tries again, so a ledger opened during an outage migrates when it is back.
        """
        with self._migrating:
            if self._migrated:
                return
            attempt = 0
            while True:
                try:
                    migrate(self.engine)
                    self._migrated = True
                    return
                except OperationalError as exc:
                    attempt += 1
                    if attempt > self._retries:
                        raise LedgerUnavailable(
                            f"ledger migration failed after {attempt} attempt(s): {exc.orig}"
                        ) from exc
                    time.sleep(self._backoff_s * 2 ** (attempt - 1))
                except SQLAlchemyError as exc:
                    raise LedgerError(f"ledger migration failed: {exc}") from exc

    def _run(self, what: str, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction; retry operational errors a bounded number of times."""
        self.ensure_schema()
        attempt = 0
        while True:
            try:
                with self._sessions.begin() as session:
                    return work(session)
            except DBAPIError as exc:
                if not _unreachable(exc):
                    raise LedgerError(f"ledger {what} failed: {exc}") from exc
                attempt += 1
                if attempt > self._retries:
                    raise LedgerUnavailable(
                        f"ledger {what} failed after {attempt} attempt(s): {exc.orig}"
                    ) from exc
                logger.warning(
                    "ledger %s failed (attempt %s), retrying: %s", what, attempt, exc.orig
                )
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            except SQLAlchemyError as exc:
                raise LedgerError(f"ledger {what} failed: {exc}") from exc

    async def _call(self, what: str, work: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self._run, what, work)

    # -- Ledger -------------------------------------------------------------------------

    async def record_transition(
        self,
        namespace: str,
        name: str,
        old_status: StatusLike,
        new_status: StatusLike,
        spec: Mapping[str, Any],
        *,
        now: datetime | None = None,
    ) -> None:
        plan = plan_transition(old_status, new_status, spec, now or self._clock())
        if plan.is_empty:
            return
        await self._call("write", lambda s: self._write(s, namespace, name, plan))

    def _write(self, session: Session, namespace: str, name: str, plan: TransitionPlan) -> None:
        rows: dict[str, Rollout] = {}

        def rollout(key: str) -> Rollout:
            if key not in rows:
                found = session.scalars(
                    select(Rollout).where(
                        Rollout.namespace == namespace,
                        Rollout.model == name,
                        Rollout.rollout_key == key,
                    )
                ).one_or_none()
                if found is None:
                    raise LedgerError(f"ledger: rollout {key} of {namespace}/{name} not found")
                rows[key] = found
            return rows[key]

        for start in plan.starts:
            existing = session.scalars(
                select(Rollout).where(
                    Rollout.namespace == namespace,
                    Rollout.model == name,
                    Rollout.rollout_key == start.key,
                )
            ).one_or_none()
            if existing is None:
                existing = Rollout(
                    namespace=namespace,
                    model=name,
                    rollout_key=start.key,
                    candidate_version=start.candidate_version,
                    stable_version=start.stable_version,
                    started_at=start.started_at,
                    reason="",
                    spec=start.spec,
                )
                session.add(existing)
                session.flush()
            rows[start.key] = existing
        if plan.gate is not None:
            key, gate = plan.gate
            row = rollout(key)
            values = {
                "stable_accuracy": gate.stable_accuracy,
                "canary_accuracy": gate.canary_accuracy,
                "drop": gate.drop,
                "upper_bound": gate.upper_bound,
                "p_value": gate.p_value,
                "samples": gate.samples,
                "decision": gate.decision,
                "smoke_passed": gate.smoke_passed,
                "smoke": list(gate.smoke),
                "inputs": gate.inputs,
                "recorded_at": self._clock(),
            }
            if row.gate is None:
                row.gate = GateResultRow(**values)
            else:
                for field, value in values.items():
                    setattr(row.gate, field, value)
        if plan.phase is not None:
            key, change = plan.phase
            rollout_id = rollout(key).id
            same: ColumnElement[bool] = PhaseChangeRow.from_phase.is_(None)
            if change.from_phase is not None:
                same = PhaseChangeRow.from_phase == change.from_phase
            seen = session.scalars(
                select(PhaseChangeRow.id).where(
                    PhaseChangeRow.rollout_id == rollout_id,
                    PhaseChangeRow.at == change.at,
                    PhaseChangeRow.to_phase == change.to_phase,
                    same,
                )
            ).first()
            if seen is None:  # a replayed transition was already written: nothing new
                session.add(
                    PhaseChangeRow(
                        rollout_id=rollout_id,
                        at=change.at,
                        from_phase=change.from_phase,
                        to_phase=change.to_phase,
                        message=change.message[:4000],
                    )
                )
        for end in plan.ends:
            row = rollout(end.key)
            row.decision = end.decision
            row.reason = end.reason
            row.finished_at = end.finished_at
            if end.spec is not None:
                row.spec = end.spec

    async def history(self, namespace: str, name: str, limit: int = 20) -> list[RolloutRecord]:
        def read(session: Session) -> list[RolloutRecord]:
            rows = session.scalars(
                select(Rollout)
                .where(Rollout.namespace == namespace, Rollout.model == name)
                .order_by(Rollout.started_at.desc(), Rollout.id.desc())
                .limit(max(1, limit))
                .options(selectinload(Rollout.gate), selectinload(Rollout.phases))
            ).all()
            return [_record(r) for r in rows]

        return await self._call("read", read)

    async def promoted_spec(self, namespace: str, name: str, version: str) -> dict[str, Any] | None:
        def read(session: Session) -> dict[str, Any] | None:
            row = session.scalars(
                select(Rollout)
                .where(
                    Rollout.namespace == namespace,
                    Rollout.model == name,
                    Rollout.candidate_version == version,
                    Rollout.decision == PROMOTED,
                )
                .order_by(Rollout.finished_at.desc(), Rollout.id.desc())
                .limit(1)
            ).one_or_none()
            return None if row is None else dict(row.spec)

        return await self._call("read", read)

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.dispose)


def _unreachable(exc: DBAPIError) -> bool:
    """The database is down or the connection broke (worth retrying), not a bad statement."""
    return isinstance(exc, OperationalError) or exc.connection_invalidated


async def open_sql_ledger(
    dsn: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = 3
) -> SqlLedger:
    """Connect, migrate to the newest schema, and return the ledger (no outbox)."""
    ledger = SqlLedger(make_engine(dsn, timeout_s), retries=retries)
    try:
        await asyncio.to_thread(ledger.ensure_schema)
    except BaseException:
        ledger.engine.dispose()
        raise
    return ledger


async def open_ledger(
    dsn: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    retries: int = 3,
    spool_dir: str | Path | None = None,
    registry: CollectorRegistry | None = None,
    retry_s: float = DEFAULT_RETRY_S,
) -> DurableLedger:
    """The operator's ledger: a ``SqlLedger`` behind the outbox of
    :class:`~tensorgate.ledger.durable.DurableLedger` (kept in memory, and in ``spool_dir``
    when given, so it survives a restart; its metrics go to ``registry`` when given).

    A database unreachable now does not fail the start: the schema is migrated, and the
    outbox written, once it is back. Any other problem (a bad DSN, a failed migration) does.
    """
    inner = SqlLedger(make_engine(dsn, timeout_s), retries=retries)
    try:
        await asyncio.to_thread(inner.ensure_schema)
    except LedgerUnavailable as exc:  # start anyway: rollouts never wait on their history
        logger.warning("ledger unreachable at start, the outbox keeps transitions: %s", exc)
    except BaseException:
        inner.engine.dispose()
        raise
    return await DurableLedger.open(inner, spool_dir=spool_dir, registry=registry, retry_s=retry_s)
