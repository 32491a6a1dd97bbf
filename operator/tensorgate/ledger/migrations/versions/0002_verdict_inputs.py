"""Replayable verdicts: every gate result keeps what it was decided from.

``gate_results.inputs`` (JSON, nullable: rows written before this revision have none) holds
the whole ``status.gate`` and the spec's margin and confidence; ``tensorgate history --verify``
recomputes each verdict from it.

Revision ID: 0002_verdict_inputs
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_verdict_inputs"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gate_results") as batch:
        batch.add_column(sa.Column("inputs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gate_results") as batch:
        batch.drop_column("inputs")
