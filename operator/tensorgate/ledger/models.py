"""The ledger's tables (SQLAlchemy 2 declarative). Alembic's migrations (``0001_initial``,
``0002_verdict_inputs``) create them; ``tests/unit/ledger`` proves the two agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Rollout(Base):
    __tablename__ = "rollouts"
    __table_args__ = (
        UniqueConstraint("namespace", "model", "rollout_key", name="uq_rollouts_key"),
        Index("ix_rollouts_model_started", "namespace", "model", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(253))
    model: Mapped[str] = mapped_column(String(253))
    rollout_key: Mapped[str] = mapped_column(String(255))
    candidate_version: Mapped[str] = mapped_column(String(64))
    stable_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    decision: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)

    gate: Mapped[GateResultRow | None] = relationship(
        back_populates="rollout", cascade="all, delete-orphan", uselist=False
    )
    phases: Mapped[list[PhaseChangeRow]] = relationship(
        back_populates="rollout", cascade="all, delete-orphan", order_by="PhaseChangeRow.id"
    )


class GateResultRow(Base):
    __tablename__ = "gate_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), unique=True
    )
    stable_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    canary_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    drop: Mapped[float | None] = mapped_column(Float, nullable=True)
    upper_bound: Mapped[float | None] = mapped_column(Float, nullable=True)
    p_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    samples: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decision: Mapped[str | None] = mapped_column(String(32), nullable=True)
    smoke_passed: Mapped[bool | None] = mapped_column(nullable=True)
    smoke: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    inputs: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """What the verdict was decided from (``ledger.base.verdict_inputs``); replayed by
    ``tensorgate history --verify``."""
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    rollout: Mapped[Rollout] = relationship(back_populates="gate")


class PhaseChangeRow(Base):
    __tablename__ = "phase_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rollout_id: Mapped[int] = mapped_column(
        ForeignKey("rollouts.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    from_phase: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_phase: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")

    rollout: Mapped[Rollout] = relationship(back_populates="phases")
