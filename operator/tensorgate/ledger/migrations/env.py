"""Alembic environment, configured in code (no alembic.ini): see ``ledger.sql.migrate``.

The caller hands a live connection in ``config.attributes["connection"]``. On PostgreSQL an
advisory lock serialises concurrent upgrades (two operator replicas starting together).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from tensorgate.ledger.models import Base

MIGRATION_LOCK_ID = 0x7465_6E73  # "tens"

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    context.run_migrations()
