"""Alembic's migrations and the SQLAlchemy models describe the same schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from tensorgate.ledger.models import Base
from tensorgate.ledger.sql import make_engine, migrate


def test_migrations_match_models(sqlite_dsn: str) -> None:
    engine = make_engine(sqlite_dsn)
    try:
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_migrate_twice_is_a_no_op(sqlite_dsn: str) -> None:
    engine = make_engine(sqlite_dsn)
    try:
        migrate(engine)
        migrate(engine)
        tables = set(inspect(engine).get_table_names())
        assert {"rollouts", "gate_results", "phase_changes", "alembic_version"} <= tables
    finally:
        engine.dispose()
