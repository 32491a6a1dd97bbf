"""The initial ledger: rollouts, gate_results, phase_changes.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=253), nullable=False),
        sa.Column("model", sa.String(length=253), nullable=False),
        sa.Column("rollout_key", sa.String(length=255), nullable=False),
        sa.Column("candidate_version", sa.String(length=64), nullable=False),
        sa.Column("stable_version", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
        sa.UniqueConstraint("namespace", "model", "rollout_key", name="uq_rollouts_key"),
    )
    op.create_index("ix_rollouts_model_started", "rollouts", ["namespace", "model", "started_at"])
    op.create_table(
        "gate_results",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("stable_accuracy", sa.Float(), nullable=True),
        sa.Column("canary_accuracy", sa.Float(), nullable=True),
        sa.Column("drop", sa.Float(), nullable=True),
        sa.Column("upper_bound", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("samples", sa.Integer(), nullable=True),
        sa.Column("decision", sa.String(length=32), nullable=True),
        sa.Column("smoke_passed", sa.Boolean(), nullable=True),
        sa.Column("smoke", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name="fk_gate_results_rollout_id_rollouts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_gate_results"),
        sa.UniqueConstraint("rollout_id", name="uq_gate_results_rollout_id"),
    )
    op.create_table(
        "phase_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_phase", sa.String(length=32), nullable=True),
        sa.Column("to_phase", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rollout_id"],
            ["rollouts.id"],
            name="fk_phase_changes_rollout_id_rollouts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_phase_changes"),
    )
    op.create_index("ix_phase_changes_rollout_id", "phase_changes", ["rollout_id"])


def downgrade() -> None:
    op.drop_index("ix_phase_changes_rollout_id", table_name="phase_changes")
    op.drop_table("phase_changes")
    op.drop_table("gate_results")
    op.drop_index("ix_rollouts_model_started", table_name="rollouts")
    op.drop_table("rollouts")
