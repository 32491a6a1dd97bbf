"""``ModelClient`` over TF Serving's gRPC API (``grpc.aio``, ``tensorflow-serving-api``).

``PredictionService.Predict`` with tensors packed into ``tensor_content``,
``PredictionService.GetModelMetadata`` (``signature_def``) and ``ModelService.GetModelStatus``.
Importing this module imports TensorFlow (the serving API protos depend on it): keep it off the
operator's reconcile path; the CLI imports it lazily.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tensorgate.errors import ServingError
from tensorgate.serving.base import (
    TF_DTYPES,
    ClientOptions,
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

__all__ = [
    "GrpcModelClient",
    "make_tensor_proto",
    "signature_from_proto",
    "tensor_from_proto",
]

_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}

_CODE_NAMES: dict[int, str] = {c.value[0]: c.name for c in grpc.StatusCode}

_NP_TO_TF: dict[str, int] = {
    np_name: types_pb2.DataType.Value(tf_name) for tf_name, np_name in TF_DTYPES.items()
}
_TF_TO_NP: dict[int, str] = {v: k for k, v in _NP_TO_TF.items()}

# Where a TensorProto without tensor_content keeps its values, by dtype.
_VAL_FIELDS: dict[str, str] = {
    "float32": "float_val",
    "float64": "double_val",
    "int8": "int_val",
    "int16": "int_val",
    "int32": "int_val",
    "uint8": "int_val",
    "uint16": "int_val",
    "int64": "int64_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
    "bool": "bool_val",
    "string": "string_val",
    "float16": "half_val",
}


def make_tensor_proto(value: np.ndarray) -> tensor_pb2.TensorProto:
    """Pack a numpy array into a TensorProto (``tensor_content``; strings in ``string_val``)."""
    arr = np.asarray(value)
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(s)) for s in arr.shape]
    )
    if arr.dtype.kind in "OSU":
        values = [x if isinstance(x, bytes) else str(x).encode() for x in arr.ravel().tolist()]
        return tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=values
        )
    name = arr.dtype.name
    if name not in _NP_TO_TF:
        raise ValueError(f"unsupported dtype {name}")
    return tensor_pb2.TensorProto(
        dtype=_NP_TO_TF[name],
        tensor_shape=shape,
        tensor_content=np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes(),
    )


def tensor_from_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Unpack a TensorProto (packed ``tensor_content`` or the typed ``*_val`` fields)."""
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    dtype_name = _TF_TO_NP.get(proto.dtype)
    if dtype_name is None:
        raise ServingError(f"unsupported tensor dtype {types_pb2.DataType.Name(proto.dtype)}")
    if dtype_name == "string":
        flat = np.array(list(proto.string_val), dtype=object)
    elif proto.tensor_content:
        dtype = np.dtype(dtype_name).newbyteorder("<")
        flat = np.frombuffer(proto.tensor_content, dtype=dtype).astype(dtype_name)
    else:
        raw = getattr(proto, _VAL_FIELDS[dtype_name])
        if dtype_name == "float16":
            flat = np.array(list(raw), dtype=np.uint16).view(np.float16)
        else:
            flat = np.array(list(raw), dtype=dtype_name)
    count = int(np.prod(shape)) if shape else 1
    if flat.size == count:
        return flat.reshape(shape)
    if flat.size == 1:  # TF allows one value to stand for the whole tensor
        return np.full(shape, flat[0], dtype=flat.dtype)
    raise ServingError(f"tensor of shape {list(shape)} carries {flat.size} values")


def _tensor_info(info: meta_graph_pb2.TensorInfo) -> TensorInfo:
    dtype = _TF_TO_NP.get(info.dtype, types_pb2.DataType.Name(info.dtype).lower())
    if info.tensor_shape.unknown_rank:
        return TensorInfo(dtype=dtype, shape=None)
    return TensorInfo(dtype=dtype, shape=tuple(int(d.size) for d in info.tensor_shape.dim))


def signature_from_proto(name: str, sig: meta_graph_pb2.SignatureDef) -> Signature:
    return Signature(
        name=name,
        inputs={k: _tensor_info(v) for k, v in sig.inputs.items()},
        outputs={k: _tensor_info(v) for k, v in sig.outputs.items()},
    )


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
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._limit = asyncio.Semaphore(self._options.concurrency)

    def __repr__(self) -> str:
        return f"GrpcModelClient(grpc://{self.target}/{self.model_name})"

    @property
    def options(self) -> ClientOptions:
        return self._options

    def _spec(self, spec: Any, *, signature: bool = True) -> None:
        spec.name = self.model_name
        if signature:
            spec.signature_name = self.signature_name
        if self.version:
            spec.version.value = self.version

    async def _call(self, what: str, method: Any, request: Any) -> Any:
        label = f"gRPC {what} {self.target}/{self.model_name}"

        async def attempt() -> Any:
            async with self._limit:
                try:
                    return await method(request, timeout=self._options.timeout_s)
                except grpc.aio.AioRpcError as exc:
                    code, details = exc.code(), exc.details() or ""
                    if code in _TRANSIENT:
                        raise TransientServingError(f"{code.name}: {details}") from exc
                    raise ServingRejectedError(
                        f"{label}: {code.name}: {details}", code.name
                    ) from exc

        return await with_retries(attempt, options=self._options, what=label)

    async def metadata(self) -> ModelMetadata:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, signature=False)
        response = await self._call("GetModelMetadata", self._predict.GetModelMetadata, request)
        defs = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata["signature_def"].Unpack(defs):
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
        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec)
        for name, value in inputs.items():
            try:
                request.inputs[name].CopyFrom(make_tensor_proto(value))
            except ValueError as exc:
                raise ServingRejectedError(f"input {name!r}: {exc}") from exc
        response = await self._call("Predict", self._predict.Predict, request)
        return {name: tensor_from_proto(t) for name, t in response.outputs.items()}

    async def status(self) -> ModelStatus:
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, signature=False)
        response = await self._call("GetModelStatus", self._models.GetModelStatus, request)
        states = get_model_status_pb2.ModelVersionStatus.State
        return ModelStatus(
            versions=tuple(
                ModelVersionStatus(
                    version=int(v.version),
                    state=VersionState(states.Name(v.state)),
                    error_code=_CODE_NAMES.get(v.status.error_code, str(v.status.error_code)),
                    error_message=v.status.error_message,
                )
                for v in response.model_version_status
            )
        )

    async def aclose(self) -> None:
        await self._channel.close()
