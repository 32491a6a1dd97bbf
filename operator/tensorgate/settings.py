"""The operator's configuration: one frozen object, built by the CLI, handed down via memo."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` without its userinfo (``http://user:pw@host`` -> ``http://host``): the only
    form of a URL that may be printed, logged, or written to status and Events."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class PrometheusOptions:
    """How the operator authenticates to Prometheus and checks its TLS certificate.

    Secrets are *file paths* (a mounted Secret), never values: the files are re-read on every
    request, so a rotated token or password is picked up without a restart.
    """

    ca_file: str | None = None
    """PEM CA bundle that signs Prometheus's server certificate (default: the system's)."""
    cert_file: str | None = None
    """PEM client certificate (mutual TLS); may hold the key too."""
    key_file: str | None = None
    """PEM private key of ``cert_file`` when it is kept apart."""
    username: str | None = None
    """Basic-auth user; the password is read from ``password_file``."""
    password_file: str | None = None
    bearer_token_file: str | None = None
    """File holding a bearer token (``Authorization: Bearer ...``)."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra request headers (e.g. ``X-Scope-OrgID``); not for secrets."""


@dataclass(frozen=True)
class GoldenSourceOptions:
    """How the operator fetches ``gs://`` and ``s3://`` golden sets."""

    max_bytes: int = 64 * 1024 * 1024
    """A golden set larger than this is refused (checked before and while streaming)."""
    timeout_s: float = 60.0
    """Per-request connect/read timeout."""
    retries: int = 3
    """Further attempts after a transport failure or a 5xx/429 answer."""
    backoff_s: float = 0.5
    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, Ceph, an emulator); None is AWS S3."""
    s3_region: str | None = None
    gcs_endpoint_url: str | None = None
    """GCS-compatible endpoint (an emulator); None is Google Cloud Storage."""
    anonymous: bool = False
    """Send unsigned requests (public buckets, emulators) when no Secret is referenced."""


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
    prometheus: PrometheusOptions = field(default_factory=PrometheusOptions)
    """TLS and credentials for ``prometheus_url``."""
    golden_sources: GoldenSourceOptions = field(default_factory=GoldenSourceOptions)
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
