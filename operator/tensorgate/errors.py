"""The one error tree of TensorGate.

    TensorGateError
     ├── ConfigError            bad input from a user: permanent, never retried
     │    └── SpecError         a ModelDeployment spec with one or more field errors
     ├── EdgeError              an edge (network, API, process) failed: temporary, retried
     │    ├── KubeAPIError      the Kubernetes API answered an error or timed out
     │    ├── ServingError      TF Serving (or the local backend) failed a call
     │    ├── PrometheusError   a metric query failed (not: returned no data)
     │    └── LedgerError       the SQL ledger failed
     └── ShapeMismatchError     a served tensor differs from the declared contract

Edges translate foreign errors with ``raise ... from exc``; handlers map ConfigError to
``kopf.PermanentError`` and EdgeError to ``kopf.TemporaryError``. A failed gate check is a
result (a Measurement), not an exception.
"""

from __future__ import annotations

from collections.abc import Sequence


class TensorGateError(Exception):
    """Root of every error TensorGate raises on purpose."""


class ConfigError(TensorGateError):
    """Input that cannot work until a human changes it."""


class SpecError(ConfigError):
    """A resource spec with field errors; ``errors`` holds one line per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


class EdgeError(TensorGateError):
    """A call across an edge failed; trying again later may work."""


class KubeAPIError(EdgeError):
    """The Kubernetes API failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ServingError(EdgeError):
    """A model server failed a call (connection, timeout, HTTP/gRPC error)."""


class PrometheusError(EdgeError):
    """A Prometheus query failed; no data is not an error (see metrics.base.NoData)."""


class LedgerError(EdgeError):
    """The SQL ledger could not be read or written."""


class ShapeMismatchError(TensorGateError):
    """A tensor's shape differs from what the contract declares."""

    def __init__(self, name: str, expected: Sequence[int], actual: Sequence[int]) -> None:
        self.name = name
        self.expected = list(expected)
        self.actual = list(actual)
        super().__init__(f"{name}: expected shape {self.expected}, got {self.actual}")
