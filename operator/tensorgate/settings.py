"""The operator's configuration: one frozen object, built by the CLI, handed down via memo."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty watches the whole cluster."""
    peering: str | None = None
    """kopf peering name; None runs standalone (one replica)."""
    liveness_endpoint: str | None = None
    """e.g. http://0.0.0.0:8080/healthz"""
    metrics_port: int | None = None
    """Port of the operator's own /metrics endpoint; None disables it."""
    metrics_host: str = "127.0.0.1"
    prometheus_url: str | None = None
    """Prometheus for metric checks with provider prometheus."""
    ledger_dsn: str | None = None
    """SQLAlchemy URL of the decision ledger; None disables the ledger."""
    ledger_spool_dir: str | None = None
    """Where the ledger's outbox spools transitions while the database is down (so they
    survive a restart); None keeps them in memory only."""
    reconcile_interval_s: float = 600.0
    """Resync: the longest an idle resource goes without a decision. Everything else is
    driven by watch events and by the wait each decision asks for."""
    request_timeout_s: float = 10.0
    retries: int = 3
    log_format: str = "plain"
    log_level: str = "INFO"
    extra: dict[str, str] = field(default_factory=dict)
