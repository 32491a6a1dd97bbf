"""The ``ModelClient`` edge: how the gate talks to a served model, whatever the transport.

Implementations: ``RestModelClient`` (``serving.rest``, TF Serving's REST API),
``GrpcModelClient`` (``serving.grpc``, ``PredictionService``), ``FakeModelClient``
(``serving.fake``, a Python function behind the same interface).

Errors (all are ``ServingError``, an ``EdgeError``)::

    ServingError
     ├── TransientServingError   connection refused/reset, timeout, 429/502/503/504,
     │                           UNAVAILABLE...: retried with backoff, then raised
     └── ServingRejectedError    the server answered and refused the request (a bad input,
                                 a model that fails on it): never retried; the gate turns it
                                 into a failed check, not a crash

This module is pure Python and numpy: it is safe on the operator's reconcile path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from tensorgate.errors import ServingError

__all__ = [
    "TF_DTYPES",
    "ClientOptions",
    "MalformedAnswerError",
    "ModelClient",
    "ModelMetadata",
    "ModelStatus",
    "ModelVersionStatus",
    "ServingRejectedError",
    "Signature",
    "TensorInfo",
    "TransientServingError",
    "VersionState",
    "numpy_dtype",
    "predict_batched",
    "with_retries",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# TF DataType enum names (as TF Serving's metadata spells them) -> numpy-style dtype names.
TF_DTYPES: dict[str, str] = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_INT8": "int8",
    "DT_INT16": "int16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_UINT8": "uint8",
    "DT_UINT16": "uint16",
    "DT_UINT32": "uint32",
    "DT_UINT64": "uint64",
    "DT_BOOL": "bool",
    "DT_STRING": "string",
}


def numpy_dtype(dtype: str) -> np.dtype[np.generic]:
    """The numpy dtype for a dtype name such as ``float32`` or ``string`` (object)."""
    if dtype == "string":
        return np.dtype(object)
    return np.dtype(dtype)


class TransientServingError(ServingError):
    """A call failed in a way that trying again may fix (network, timeout, overload)."""


class ServingRejectedError(ServingError):
    """The server answered and refused the request; ``code`` is the gRPC-style status name."""

    def __init__(self, message: str, code: str = "INVALID_ARGUMENT") -> None:
        self.code = code
        super().__init__(message)


class MalformedAnswerError(ServingRejectedError):
    """The server answered a predict, and the answer is no tensor of the outputs (ragged
    rows, rows naming different outputs, content that does not fill its shape): the model
    server's fault, so a failed check like a refusal, never a crash."""

    def __init__(self, what: str, exc: BaseException) -> None:
        detail = f"{type(exc).__name__}: {exc}"[:300]
        super().__init__(
            f"{what}: predict answer is not a tensor of the outputs ({detail})", "INTERNAL"
        )


UNREADABLE = (ValueError, KeyError, TypeError, IndexError, RecursionError)
"""What numpy and the decoders raise on an answer that is not a tensor (MalformedAnswerError)."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a served signature: numpy-style dtype, shape (-1 any; None unknown rank)."""

    dtype: str
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Signature:
    """A served signature's inputs and outputs by name."""

    name: str
    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]


@dataclass(frozen=True)
class ModelMetadata:
    """What ``GetModelMetadata`` answers: the served version and every signature."""

    model_name: str
    version: int | None
    signatures: Mapping[str, Signature]


class VersionState(StrEnum):
    UNKNOWN = "UNKNOWN"
    START = "START"
    LOADING = "LOADING"
    AVAILABLE = "AVAILABLE"
    UNLOADING = "UNLOADING"
    END = "END"


@dataclass(frozen=True)
class ModelVersionStatus:
    version: int
    state: VersionState
    error_code: str = "OK"
    error_message: str = ""


@dataclass(frozen=True)
class ModelStatus:
    """The versions a server knows for one model and their states."""

    versions: tuple[ModelVersionStatus, ...]

    @property
    def available_versions(self) -> list[int]:
        return sorted(v.version for v in self.versions if v.state == VersionState.AVAILABLE)

    @property
    def is_available(self) -> bool:
        return bool(self.available_versions)


@dataclass(frozen=True)
class ClientOptions:
    """Timeouts, retries, batching and concurrency of a ``ModelClient``.

    ``retries`` is the number of extra attempts after the first for transient failures; the
    wait before retry ``k`` is ``backoff_s * 2**k``. ``batch_size`` is the most samples per
    predict request when a big input is split (``predict_batched``); ``batch_bytes``, when
    set, also caps a request's input bytes (fewer samples per request for wide inputs, at
    least one); ``concurrency`` is the most requests in flight at once per client.
    """

    timeout_s: float = 30.0
    retries: int = 2
    backoff_s: float = 0.2
    batch_size: int = 256
    concurrency: int = 4
    max_message_bytes: int = 256 * 1024 * 1024
    batch_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s < 0:
            raise ValueError("timeout_s must be > 0; retries and backoff_s must be >= 0")
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("batch_size and concurrency must be >= 1")
        if self.batch_bytes is not None and self.batch_bytes < 1:
            raise ValueError("batch_bytes must be >= 1 (or None: no byte cap)")

    def rows_per_request(self, inputs: Mapping[str, np.ndarray]) -> int:
        """Samples per request for these inputs: ``batch_size``, fewer where ``batch_bytes``
        would be exceeded (the bytes of one sample of every input together)."""
        if self.batch_bytes is None:
            return self.batch_size
        row = sum(arr.nbytes // max(1, len(arr)) for arr in inputs.values() if np.ndim(arr))
        return max(1, min(self.batch_size, self.batch_bytes // max(1, row)))


@runtime_checkable
class ModelClient(Protocol):
    """One served model (name, optional pinned version, one signature) over some transport."""

    @property
    def options(self) -> ClientOptions: ...

    async def metadata(self) -> ModelMetadata:
        """The served signatures (``GetModelMetadata``)."""
        ...

    async def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One predict request with the whole batch; outputs by name, batch first."""
        ...

    async def status(self) -> ModelStatus:
        """Version states (``GetModelStatus``)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the client is unusable afterwards."""
        ...


async def with_retries(call: Callable[[], Awaitable[T]], *, options: ClientOptions, what: str) -> T:
    """Run ``call``; retry ``TransientServingError`` up to ``options.retries`` times."""
    attempt = 0
    while True:
        try:
            return await call()
        except TransientServingError as exc:
            if attempt >= options.retries:
                raise TransientServingError(
                    f"{what}: {exc} (gave up after {attempt + 1} attempt(s))"
                ) from exc
            delay = options.backoff_s * (2**attempt)
            log.debug("%s failed (%s); retry %d in %.2fs", what, exc, attempt + 1, delay)
            attempt += 1
            if delay > 0:
                await asyncio.sleep(delay)


def _batch_len(inputs: Mapping[str, np.ndarray]) -> int:
    sizes = {name: int(np.shape(arr)[0]) if np.ndim(arr) else 1 for name, arr in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"inputs disagree on the batch size: {sizes}")
    return next(iter(sizes.values()))


async def predict_batched(
    client: ModelClient,
    inputs: Mapping[str, np.ndarray],
    *,
    batch_size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Predict a large input in batches of ``batch_size`` (default: the client's options,
    ``ClientOptions.rows_per_request``).

    Batches are sent concurrently (the client bounds how many are in flight) and the outputs
    are concatenated in order. ``on_progress(k)`` is called with the sample count of every
    finished batch.
    """
    size = batch_size or client.options.rows_per_request(inputs)
    total = _batch_len(inputs)
    if total == 0:
        raise ValueError("predict_batched: no samples")
    starts = list(range(0, total, size))

    async def one(start: int) -> dict[str, np.ndarray]:
        chunk = {name: arr[start : start + size] for name, arr in inputs.items()}
        out = await client.predict(chunk)
        if on_progress is not None:
            on_progress(min(size, total - start))
        return out

    parts = await asyncio.gather(*(one(s) for s in starts))
    names = parts[0].keys()
    merged: dict[str, np.ndarray] = {}
    for name in names:
        pieces = [p[name] for p in parts if name in p]
        if len(pieces) != len(parts):
            raise ServingRejectedError(f"output {name!r} missing from some responses", "INTERNAL")
        try:
            merged[name] = np.concatenate(pieces, axis=0)
        except ValueError as exc:
            shapes = sorted({tuple(p.shape) for p in pieces})
            raise ServingRejectedError(
                f"output {name!r}: batches answered incompatible shapes {shapes}", "INTERNAL"
            ) from exc
    return merged
