"""The serving backend's fast Predict path and the gate's request sizing, without TensorFlow.

``tensors.split_predict_request`` takes a serialised ``PredictRequest`` apart so that each
input's ``tensor_content`` is used where it lies in the request's bytes. Real TF Serving
accepts inputs in ``tensor_content`` or the typed fields alike: ``predict_util.cc``
``PreProcessPrediction`` hands ``request.inputs()`` to ``saved_model::GetInputValues``
(``Tensor::FromProto``), ``tfrt_predict_util.cc`` calls ``tensor.FromProto`` itself. The split
must read every request exactly as protobuf would (checked here against the project's own
protobuf classes; the backend runs it on TensorFlow Serving's in
tests/integration/gate/test_serving_fidelity.py).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tensorgate.serving.base import ClientOptions, TensorInfo, predict_batched
from tensorgate.serving.fake import FakeModelClient
from tensorgate.serving.protos import serving_apis_pb2 as apis
from tensorgate.serving.protos import tf_core_pb2
from tensorgate.serving.tensors import pack, split_predict_request, unpack
from tests.helpers import require


def _spec(spec: apis.ModelSpec) -> None:
    spec.name, spec.signature_name = "m", "sig"
    spec.version.value = 3


def _split_inputs(raw: bytes) -> tuple[apis.PredictRequest, dict[str, np.ndarray]]:
    head, tensors = split_predict_request(raw)
    inputs = {
        name: unpack(tf_core_pb2.TensorProto.FromString(proto), content)
        for name, (proto, content) in tensors.items()
    }
    return apis.PredictRequest.FromString(head), inputs


def _assert_reads_as_protobuf(raw: bytes) -> dict[str, np.ndarray]:
    request, inputs = _split_inputs(raw)
    full = apis.PredictRequest.FromString(raw)
    assert request.model_spec == full.model_spec
    assert list(request.output_filter) == list(full.output_filter)
    assert sorted(inputs) == sorted(full.inputs)
    for name, got in inputs.items():
        want = unpack(full.inputs[name])
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want)
    return inputs


@pytest.mark.parametrize("content", [True, False], ids=["tensor-content", "typed-val"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int32", "uint16", "bool"])
def test_split_request_reads_as_protobuf_does(dtype: str, content: bool) -> None:
    """Both input encodings TF Serving accepts, several dtypes, a scalar, an empty tensor and
    a non-ASCII input name; the other request fields survive the split."""
    arr = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    request = apis.PredictRequest()
    _spec(request.model_spec)
    request.output_filter.append("y")
    for name, value in {"a": arr, "b": np.array(7, dtype=dtype), "\u00e9": arr[:0]}.items():
        pack(value, request.inputs[name], content=content)
    request.inputs["s"].CopyFrom(pack(np.array([[b"\xff", b"x"]], dtype=object)))
    _assert_reads_as_protobuf(request.SerializeToString())


def test_split_request_leaves_the_numbers_where_they_lie() -> None:
    """The gate's own request (``grpc._predict_request``): the array is a view of the
    request's bytes, read-only, not a copy."""
    from tensorgate.serving.grpc import _predict_request

    x = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    raw = _predict_request(_spec, {"pixels": x})
    inputs = _assert_reads_as_protobuf(raw)
    got = inputs["pixels"]
    assert np.shares_memory(got, np.frombuffer(raw, dtype=np.uint8))
    assert not got.flags.writeable


def test_split_request_follows_protobuf_merge_rules() -> None:
    """Two serialised requests joined are one merged request: a map key seen twice keeps its
    last entry; a message field seen twice is merged (protobuf's wire rules)."""
    first, second = apis.PredictRequest(), apis.PredictRequest()
    _spec(first.model_spec)
    second.model_spec.signature_name = "other"
    pack(np.ones((2, 2), np.float32), first.inputs["x"])
    pack(np.zeros((1, 3), np.float32), second.inputs["x"])
    pack(np.arange(3, dtype=np.int64), second.inputs["y"], content=False)
    inputs = _assert_reads_as_protobuf(first.SerializeToString() + second.SerializeToString())
    assert inputs["x"].shape == (1, 3)


@pytest.mark.parametrize(
    "raw",
    [b"\x12\x05\x0a\x01", b"\x12", b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x0b"],
    ids=["truncated-entry", "truncated-length", "overlong-varint", "group-wire-type"],
)
def test_split_request_refuses_malformed_bytes(raw: bytes) -> None:
    with pytest.raises(ValueError, match="malformed protobuf"):
        split_predict_request(raw)


def test_split_request_refuses_a_non_utf8_input_name() -> None:
    with pytest.raises(ValueError, match="not UTF-8"):
        split_predict_request(b"\x12\x03\x0a\x01\xff")


@pytest.mark.parametrize(
    ("batch_size", "batch_bytes", "rows"),
    [(256, None, 40), (8192, 1024, 7), (4, 1024, 4), (8192, 1, 1)],
    ids=["rows-only", "bytes-cap", "rows-cap-first", "at-least-one"],
)
async def test_batch_bytes_caps_the_rows_of_a_request(
    batch_size: int, batch_bytes: int | None, rows: int
) -> None:
    """``ClientOptions.batch_bytes`` sizes gate requests by their input bytes (a wide input
    gets fewer rows per request), never more than ``batch_size`` rows, never none."""
    options = ClientOptions(batch_size=batch_size, batch_bytes=batch_bytes)
    info = {"x": TensorInfo("float32", (-1, 32)), "k": TensorInfo("int32", (-1,))}
    client = FakeModelClient(
        lambda i: {"y": i["x"].sum(axis=1)},
        inputs=info,
        outputs={"y": TensorInfo("float32", (-1,))},
        options=options,
    )
    x = np.ones((40, 32), np.float32)  # 128 bytes a row, plus 4 for "k": 132
    out = await predict_batched(client, {"x": x, "k": np.zeros(40, np.int32)})
    assert out["y"].tolist() == [32.0] * 40
    assert len(client.requests[0]["x"]) == rows
    assert sum(len(r["x"]) for r in client.requests) == 40


def test_batch_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="batch_bytes"):
        ClientOptions(batch_bytes=0)


_FAULTS = """
import resource, sys
from tensorgate.serving.tensors import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = b"x" * (40 << 20)  # above glibc's largest dynamic mmap threshold (32 MiB)
del block
start = faults()
for _ in range(10):
    block = b"x" * (40 << 20)
    del block
print(faults() - start)
"""


def test_keep_freed_memory_reuses_pages_of_freed_big_buffers() -> None:
    """The serving backend and ``tensorgate run`` call it: a freed multi-MiB buffer's pages
    serve the next one instead of faulting in afresh (minor page faults counted by the
    kernel; in a child process, so this one's allocator stays as it was)."""
    require(sys.platform.startswith("linux"), "glibc (mallopt)", "run the tests on Linux")

    def faults(mode: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True
        )
        return int(out.stdout)

    default, kept = faults("default"), faults("keep")
    assert default > 10 * 10_000 * 0.9  # ten blocks of 10,240 pages, each faulted in
    assert kept < default / 10
