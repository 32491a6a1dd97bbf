"""The gRPC client without TensorFlow: committed protos, TensorProto packing, retries.

Field numbers and names follow TF Serving's published API (tensorflow/serving
``tensorflow_serving/apis/{model,predict,get_model_metadata,get_model_status,status,
prediction_service,model_service}.proto``) and TensorFlow's ``tensor.proto``,
``tensor_shape.proto``, ``types.proto`` and ``meta_graph.proto``. The retry rules follow the
status meanings in ``model_servers/http_server.cc`` (RESOURCE_EXHAUSTED is overload, 429).
The wire format against the real ``tensorflow_serving`` classes is checked in
tests/integration/gate/test_serving_fidelity.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from tensorgate.serving.base import ClientOptions, ServingRejectedError, TransientServingError
from tensorgate.serving.grpc import GrpcModelClient
from tensorgate.serving.protos import generate, serving_apis_pb2_grpc, tf_core_pb2
from tensorgate.serving.protos import serving_apis_pb2 as apis
from tensorgate.serving.tensors import pack, unpack


def test_committed_proto_modules_match_a_fresh_protoc_run(tmp_path: Path) -> None:
    """`make protos` output is committed; this fails when a .proto changed without it."""
    generate.generate(tmp_path)
    stale = [
        name
        for name in generate.MODULES
        if (tmp_path / name).read_text() != (generate.HERE / name).read_text()
    ]
    assert stale == [], f"stale generated modules {stale}: run `make protos` and commit"


PUBLISHED_FIELDS = [
    ("tensorflow.TensorProto", "dtype", 1),
    ("tensorflow.TensorProto", "tensor_shape", 2),
    ("tensorflow.TensorProto", "tensor_content", 4),
    ("tensorflow.TensorProto", "float_val", 5),
    ("tensorflow.TensorProto", "double_val", 6),
    ("tensorflow.TensorProto", "int_val", 7),
    ("tensorflow.TensorProto", "string_val", 8),
    ("tensorflow.TensorProto", "int64_val", 10),
    ("tensorflow.TensorProto", "bool_val", 11),
    ("tensorflow.TensorProto", "half_val", 13),
    ("tensorflow.TensorProto", "uint32_val", 16),
    ("tensorflow.TensorProto", "uint64_val", 17),
    ("tensorflow.TensorShapeProto", "dim", 2),
    ("tensorflow.TensorShapeProto", "unknown_rank", 3),
    ("tensorflow.TensorInfo", "name", 1),
    ("tensorflow.TensorInfo", "dtype", 2),
    ("tensorflow.TensorInfo", "tensor_shape", 3),
    ("tensorflow.SignatureDef", "inputs", 1),
    ("tensorflow.SignatureDef", "outputs", 2),
    ("tensorflow.SignatureDef", "method_name", 3),
    ("tensorflow.serving.ModelSpec", "name", 1),
    ("tensorflow.serving.ModelSpec", "version", 2),
    ("tensorflow.serving.ModelSpec", "signature_name", 3),
    ("tensorflow.serving.ModelSpec", "version_label", 4),
    ("tensorflow.serving.PredictRequest", "model_spec", 1),
    ("tensorflow.serving.PredictRequest", "inputs", 2),
    ("tensorflow.serving.PredictRequest", "output_filter", 3),
    ("tensorflow.serving.PredictResponse", "outputs", 1),
    ("tensorflow.serving.PredictResponse", "model_spec", 2),
    ("tensorflow.serving.SignatureDefMap", "signature_def", 1),
    ("tensorflow.serving.GetModelMetadataRequest", "metadata_field", 2),
    ("tensorflow.serving.GetModelMetadataResponse", "metadata", 2),
    ("tensorflow.serving.ModelVersionStatus", "version", 1),
    ("tensorflow.serving.ModelVersionStatus", "state", 2),
    ("tensorflow.serving.ModelVersionStatus", "status", 3),
    ("tensorflow.serving.StatusProto", "error_code", 1),
    ("tensorflow.serving.GetModelStatusResponse", "model_version_status", 1),
]


@pytest.mark.parametrize(("message", "field", "number"), PUBLISHED_FIELDS)
def test_proto_fields_carry_the_published_numbers(message: str, field: str, number: int) -> None:
    from tensorgate.serving.protos._pool import POOL

    descriptor = POOL.FindMessageTypeByName(message)
    assert descriptor.fields_by_name[field].number == number


def test_grpc_client_imports_no_tensorflow() -> None:
    code = (
        "import json, sys; import tensorgate.serving.grpc, tensorgate.checks; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('tensorflow', 'tensorflow_serving', 'keras'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


DTYPES = ["float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8",
          "uint16", "uint32", "uint64", "bool"]  # fmt: skip


@pytest.mark.parametrize("content", [True, False], ids=["tensor_content", "typed-val"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pack_unpack_round_trips_every_dtype(dtype: str, content: bool) -> None:
    rng = np.random.default_rng(0)
    arr = (rng.normal(size=(3, 4, 2)) * 50).astype(dtype)
    proto = pack(arr, content=content)
    again = unpack(tf_core_pb2.TensorProto.FromString(proto.SerializeToString()))
    assert again.dtype == arr.dtype and again.shape == arr.shape
    np.testing.assert_array_equal(again, arr)
    assert bool(proto.tensor_content) == content


def test_float16_travels_as_half_val_bits() -> None:
    """TensorFlow keeps DT_HALF values as their 16 bits in int32 ``half_val`` (tensor.proto)."""
    arr = np.array([[1.5, -2.0], [65504.0, 0.000061]], dtype=np.float16)
    proto = pack(arr, content=False)
    assert proto.dtype == tf_core_pb2.DT_HALF
    assert list(proto.half_val) == arr.view(np.uint16).ravel().tolist()
    np.testing.assert_array_equal(unpack(proto), arr)


def test_unpack_decodes_typed_fields_as_tf_serving_writes_them() -> None:
    proto = tf_core_pb2.TensorProto(dtype=tf_core_pb2.DT_INT64, int64_val=[1, 2, 3, 4, 5, 6])
    proto.tensor_shape.dim.add().size = 2
    proto.tensor_shape.dim.add().size = 3
    np.testing.assert_array_equal(unpack(proto), np.arange(1, 7, dtype=np.int64).reshape(2, 3))
    one = tf_core_pb2.TensorProto(dtype=tf_core_pb2.DT_FLOAT, float_val=[7.0])
    one.tensor_shape.dim.add().size = 4
    np.testing.assert_array_equal(unpack(one), np.full(4, 7.0, dtype=np.float32))


def test_strings_of_any_rank_keep_shape_and_bytes() -> None:
    arr = np.array([[b"a", b"\xff\xfe"], [b"", "caf\u00e9".encode()]], dtype=object)
    again = unpack(pack(arr))
    assert again.shape == (2, 2) and again.dtype == object
    assert again.tolist() == arr.tolist()
    words = unpack(pack(np.array([["x", "\u00e9"]])))
    assert words.tolist() == [[b"x", "\u00e9".encode()]]


def test_pack_rejects_dtype_without_tf_type() -> None:
    with pytest.raises(ValueError, match="complex"):
        pack(np.zeros(2, dtype=np.complex64))


class _Servicer(serving_apis_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    """Answers Predict with x + 1 in typed fields after ``fail`` failures of ``code``."""

    def __init__(self, fail: int, code: grpc.StatusCode) -> None:
        self.calls = 0
        self.fail = fail
        self.code = code

    async def Predict(self, request: apis.PredictRequest, context: Any) -> apis.PredictResponse:
        self.calls += 1
        if self.calls <= self.fail:
            await context.abort(self.code, "busy")
        x = unpack(request.inputs["x"])
        response = apis.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        pack(x + 1, response.outputs["y"], content=False)
        return response


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[grpc.aio.Server] = []

    async def start(servicer: _Servicer) -> str:
        server = grpc.aio.server()
        serving_apis_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(grace=None)


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
     grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED],
    ids=lambda c: c.name,
)  # fmt: skip
async def test_grpc_predict_retries_transient_codes(serve: Any, code: grpc.StatusCode) -> None:
    servicer = _Servicer(fail=2, code=code)
    client = GrpcModelClient(
        await serve(servicer), "m", version=3, options=ClientOptions(retries=2, backoff_s=0)
    )
    try:
        out = await client.predict({"x": np.arange(6, dtype=np.float16).reshape(3, 2)})
    finally:
        await client.aclose()
    assert servicer.calls == 3
    np.testing.assert_array_equal(out["y"], np.arange(1, 7, dtype=np.float16).reshape(3, 2))


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
     grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED],
    ids=lambda c: c.name,
)  # fmt: skip
async def test_grpc_predict_never_retries_refusals(serve: Any, code: grpc.StatusCode) -> None:
    servicer = _Servicer(fail=5, code=code)
    client = GrpcModelClient(
        await serve(servicer), "m", options=ClientOptions(retries=3, backoff_s=0)
    )
    try:
        with pytest.raises(ServingRejectedError) as err:
            await client.predict({"x": np.zeros((1, 2), np.float32)})
    finally:
        await client.aclose()
    assert servicer.calls == 1 and err.value.code == code.name


async def test_grpc_transient_failure_gives_up_after_retries(serve: Any) -> None:
    servicer = _Servicer(fail=10, code=grpc.StatusCode.UNAVAILABLE)
    client = GrpcModelClient(
        await serve(servicer), "m", options=ClientOptions(retries=1, backoff_s=0)
    )
    try:
        with pytest.raises(TransientServingError, match="gave up after 2"):
            await client.predict({"x": np.zeros((1, 2), np.float32)})
    finally:
        await client.aclose()
    assert servicer.calls == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_joined_predict_request_parses_as_protobuf_would_write_it(dtype: str) -> None:
    """The gRPC client joins the tensor bytes into the request without copying them into a
    proto first; the wire bytes must parse to what protobuf itself would build."""
    from tensorgate.serving.grpc import _predict_request

    arr = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    scalar = np.array(5, dtype=dtype)

    def spec(s: apis.ModelSpec) -> None:
        s.name, s.signature_name = "m", "sig"
        s.version.value = 7

    raw = _predict_request(spec, {"a": arr, "b": scalar, "\u00e9": arr[:0]})
    request = apis.PredictRequest.FromString(raw)
    assert request.model_spec.name == "m" and request.model_spec.version.value == 7
    for key, want in {"a": arr, "b": scalar, "\u00e9": arr[:0]}.items():
        got = unpack(request.inputs[key])
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


async def test_grpc_client_packs_no_more_requests_than_it_has_in_flight(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``predict_batched`` starts every batch at once; the client takes a ``concurrency``
    slot before packing, so at most that many packed requests exist per client (a golden
    set is never copied whole into requests) and the answers still come back in order."""
    import tensorgate.serving.grpc as grpc_client
    from tensorgate.serving.base import predict_batched

    live: list[int] = []
    pack_request, read_outputs = grpc_client._predict_request, grpc_client._predict_outputs

    def packed(*args: Any) -> bytes:
        live.append(1)
        assert len(live) <= 2, "more packed requests than requests in flight"
        return pack_request(*args)

    def answered(raw: bytes, model: str) -> dict[str, np.ndarray]:
        live.pop()
        return read_outputs(raw, model)

    monkeypatch.setattr(grpc_client, "_predict_request", packed)
    monkeypatch.setattr(grpc_client, "_predict_outputs", answered)
    servicer = _Servicer(fail=0, code=grpc.StatusCode.OK)
    options = ClientOptions(batch_size=3, concurrency=2, retries=0)
    client = GrpcModelClient(await serve(servicer), "m", options=options)
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    try:
        out = await predict_batched(client, {"x": x})
    finally:
        await client.aclose()
    assert servicer.calls == 7
    np.testing.assert_array_equal(out["y"], x + 1)


async def test_grpc_client_decodes_only_big_answers_in_a_worker_thread(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small answer is decoded on the event loop (the thread hop costs more than the
    decoding); one over ``INLINE_ANSWER_BYTES`` in a worker thread, off the loop."""
    import threading

    import tensorgate.serving.grpc as grpc_client

    threads: list[bool] = []
    read_outputs = grpc_client._predict_outputs

    def answered(raw: bytes, model: str) -> dict[str, np.ndarray]:
        threads.append(threading.current_thread() is threading.main_thread())
        return read_outputs(raw, model)

    monkeypatch.setattr(grpc_client, "_predict_outputs", answered)
    servicer = _Servicer(fail=0, code=grpc.StatusCode.OK)
    client = GrpcModelClient(await serve(servicer), "m", options=ClientOptions(retries=0))
    big_rows = grpc_client.INLINE_ANSWER_BYTES // 8 + 1  # float32 x 2 per row: over the limit
    try:
        for rows in (3, big_rows):
            x = np.ones((rows, 2), dtype=np.float32)
            np.testing.assert_array_equal((await client.predict({"x": x}))["y"], x + 1)
    finally:
        await client.aclose()
    assert threads == [True, False]  # small: on the loop's (main) thread; big: a worker
