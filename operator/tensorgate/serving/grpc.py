"""``ModelClient`` over TF Serving's gRPC API (``grpc.aio``), without TensorFlow.

The messages are the project's own compiled subset of TF Serving's protos
(``tensorgate.serving.protos``: published package names and field numbers), so importing this
module imports no TensorFlow and it is safe on the operator's reconcile path. Calls:
``PredictionService.Predict`` (inputs packed into ``tensor_content``; answers decoded from the
typed ``*_val`` fields TF Serving sends by default, or ``tensor_content``),
``PredictionService.GetModelMetadata`` (``signature_def``) and ``ModelService.GetModelStatus``.

Packing and serialising run in a worker thread (``asyncio.to_thread``), and so do parsing
and unpacking of any answer over ``INLINE_ANSWER_BYTES``: the channel carries bytes, so no
numpy or protobuf work of size runs on the event loop.

Status codes and retries follow gRPC's meaning (``model_servers/http_server.cc`` maps the same
codes to HTTP): UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED and CANCELLED are
transient and retried; every other code is a refusal and is not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from tensorgate.errors import ServingError
from tensorgate.serving.base import (
    UNREADABLE,
    ClientOptions,
    MalformedAnswerError,
    ModelMetadata,
    ModelStatus,
    ModelVersionStatus,
    ServingRejectedError,
    Signature,
    TensorInfo,
    TransientServingError,
    VersionState,
    with_retries,
)
from tensorgate.serving.protos import serving_apis_pb2 as apis
from tensorgate.serving.protos import tf_core_pb2, tf_error_pb2
from tensorgate.serving.tensors import (
    ENUM_DTYPE,
    dtype_enum_name,
    length_delimited,
    pack,
    packed_tensor_parts,
    unpack,
)

__all__ = [
    "TRANSIENT_CODES",
    "GrpcModelClient",
    "make_tensor_proto",
    "signature_from_proto",
    "tensor_from_proto",
]

M = TypeVar("M")

TRANSIENT_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)
"""gRPC codes worth another attempt (overload, restart, cut-off); others are final."""

INLINE_ANSWER_BYTES = 256 * 1024
"""Predict answers up to this size are decoded on the event loop (a 2,000 x 10 float answer,
80 KB, takes ~20 us; the hop to a worker thread and back cost the gate 15-20 % in
benchmarks/gate_bench.py); bigger ones in a worker thread."""

_PREDICT = "/tensorflow.serving.PredictionService/Predict"
_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
_STATUS = "/tensorflow.serving.ModelService/GetModelStatus"

make_tensor_proto = pack
"""numpy -> project ``TensorProto`` (``tensor_content``); see ``serving.tensors.pack``."""
tensor_from_proto = unpack
"""``TensorProto`` (content or typed fields) -> numpy; see ``serving.tensors.unpack``."""


def _tensor_info(info: tf_core_pb2.TensorInfo) -> TensorInfo:
    dtype = ENUM_DTYPE.get(int(info.dtype), dtype_enum_name(int(info.dtype)).lower())
    if info.tensor_shape.unknown_rank:
        return TensorInfo(dtype=dtype, shape=None)
    return TensorInfo(dtype=dtype, shape=tuple(int(d.size) for d in info.tensor_shape.dim))


def signature_from_proto(name: str, sig: tf_core_pb2.SignatureDef) -> Signature:
    return Signature(
        name=name,
        inputs={k: _tensor_info(v) for k, v in sig.inputs.items()},
        outputs={k: _tensor_info(v) for k, v in sig.outputs.items()},
    )


def _predict_request(
    spec: Callable[[apis.ModelSpec], None], inputs: Mapping[str, np.ndarray]
) -> bytes:
    """A serialised ``PredictRequest``: the model spec through protobuf, each input as a
    ``inputs`` map entry (key 1, TensorProto 2) whose content is joined in, copied once."""
    head = apis.PredictRequest()
    spec(head.model_spec)
    parts: list[bytes | memoryview] = [head.SerializeToString()]
    for name, value in inputs.items():
        try:
            tensor = packed_tensor_parts(value)
        except ValueError as exc:
            raise ServingRejectedError(f"input {name!r}: {exc}") from exc
        key = name.encode()
        entry = [*length_delimited(1, [key]), *length_delimited(2, tensor)]
        parts += length_delimited(2, entry)
    return b"".join(parts)


def _parsed(parse: Callable[[bytes], M], raw: bytes, what: str) -> M:
    """A response message from its bytes; a ``ServingError`` when they are not one."""
    try:
        return parse(raw)
    except DecodeError as exc:
        raise ServingError(f"{what}: the answer is not a {what} response ({exc})") from exc


def _predict_outputs(raw: bytes, model: str) -> dict[str, np.ndarray]:
    response = _parsed(apis.PredictResponse.FromString, raw, "Predict")
    try:
        return {name: unpack(t) for name, t in response.outputs.items()}
    except (ServingError, *UNREADABLE) as exc:  # a TensorProto that is no tensor of its shape
        raise MalformedAnswerError(f"model {model}", exc) from exc


class GrpcModelClient:
    """TF Serving gRPC client for one model, optional pinned version, one signature."""

    def __init__(
        self,
        target: str,
        model_name: str,
        *,
        version: int | None = None,
        signature_name: str = "serving_default",
        options: ClientOptions | None = None,
    ) -> None:
        self._options = options or ClientOptions()
        self.target = target.removeprefix("grpc://").rstrip("/")
        self.model_name = model_name
        self.version = version
        self.signature_name = signature_name
        limit = self._options.max_message_bytes
        self._channel = grpc.aio.insecure_channel(
            self.target,
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
            ],
        )
        # Bytes in, bytes out: (de)serialisation happens in a worker thread, not here.
        self._methods = {
            path: self._channel.unary_unary(path) for path in (_PREDICT, _METADATA, _STATUS)
        }
        self._limit = asyncio.Semaphore(self._options.concurrency)

    def __repr__(self) -> str:
        return f"GrpcModelClient(grpc://{self.target}/{self.model_name})"

    @property
    def options(self) -> ClientOptions:
        return self._options

    def _spec(self, spec: apis.ModelSpec, *, signature: bool = True) -> None:
        spec.name = self.model_name
        if signature:
            spec.signature_name = self.signature_name
        if self.version:
            spec.version.value = self.version

    async def _call(self, what: str, path: str, request: bytes) -> bytes:
        """One call (with retries); the caller holds one of the ``concurrency`` slots."""
        label = f"gRPC {what} {self.target}/{self.model_name}"
        method = self._methods[path]

        async def attempt() -> bytes:
            try:
                answer = await method(request, timeout=self._options.timeout_s)
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code in TRANSIENT_CODES:
                    raise TransientServingError(f"{code.name}: {details}") from exc
                raise ServingRejectedError(f"{label}: {code.name}: {details}", code.name) from exc
            return bytes(answer)

        return await with_retries(attempt, options=self._options, what=label)

    async def _small_call(
        self, what: str, path: str, request: Any, parse: Callable[[bytes], M]
    ) -> M:
        async with self._limit:
            raw = await self._call(what, path, request.SerializeToString())
        return _parsed(parse, raw, what)

    async def metadata(self) -> ModelMetadata:
        request = apis.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, signature=False)
        response = await self._small_call(
            "GetModelMetadata", _METADATA, request, apis.GetModelMetadataResponse.FromString
        )
        defs = apis.SignatureDefMap()
        if "signature_def" not in response.metadata or not response.metadata[
            "signature_def"
        ].Unpack(defs):
            raise ServingError(f"model {self.model_name}: metadata carries no SignatureDefMap")
        version = (
            response.model_spec.version.value if response.model_spec.HasField("version") else None
        )
        return ModelMetadata(
            model_name=response.model_spec.name or self.model_name,
            version=version,
            signatures={k: signature_from_proto(k, v) for k, v in defs.signature_def.items()},
        )

    async def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The slot is taken before packing: at most ``concurrency`` packed requests exist
        # per client (a golden set is not copied whole into requests up front), and the
        # next request is packed while the server predicts the one before.
        async with self._limit:
            request = await asyncio.to_thread(_predict_request, self._spec, inputs)
            raw = await self._call("Predict", _PREDICT, request)
            del request
        if len(raw) <= INLINE_ANSWER_BYTES:  # a thread hop costs more than this decoding
            return _predict_outputs(raw, self.model_name)
        return await asyncio.to_thread(_predict_outputs, raw, self.model_name)

    async def status(self) -> ModelStatus:
        request = apis.GetModelStatusRequest()
        self._spec(request.model_spec, signature=False)
        response = await self._small_call(
            "GetModelStatus", _STATUS, request, apis.GetModelStatusResponse.FromString
        )
        states = apis.ModelVersionStatus.State
        return ModelStatus(
            versions=tuple(
                ModelVersionStatus(
                    version=int(v.version),
                    state=VersionState(states.Name(v.state)),
                    error_code=_code_name(int(v.status.error_code)),
                    error_message=v.status.error_message,
                )
                for v in response.model_version_status
            )
        )

    async def aclose(self) -> None:
        await self._channel.close()


def _code_name(value: int) -> str:
    try:
        return str(tf_error_pb2.Code.Name(value))
    except ValueError:
        return str(value)
