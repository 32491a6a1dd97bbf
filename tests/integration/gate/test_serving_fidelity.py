"""The local serving backend answers as real TF Serving does: one row per behaviour.

Each row names the tensorflow/serving (2.19) source it follows:

- ``model_servers/http_server.cc``: every ``/v1/...`` request counts in ``request_count``
  (``RecordModelRequestCount`` after every ``ProcessRequest``), latency only when OK, with the
  REST method as ``API`` (``predict``; empty for status/metadata GETs); ``ToHTTPStatusCode``;
- ``model_servers/http_rest_api_handler.cc`` / ``http_rest_api_util.cc``: malformed paths are
  INVALID_ARGUMENT with an empty model name;
- ``util/json_tensor.cc``: bad JSON, no ``instances``/``inputs``, b64 strings, ``*_bytes``
  outputs, no JSON for DT_HALF/DT_UINT16 inputs (501) nor DT_HALF outputs (400);
- ``servables/tensorflow/util.cc``: ``request_count{model_name,status}``,
  ``request_latency{model_name,API,entrypoint}``;
- ``model_servers/prediction_service_impl.cc``: gRPC Predict counted with ``API="Predict"``,
  GetModelMetadata not counted;
- ``servables/tensorflow/predict_util.cc`` (``PreProcessPrediction`` ->
  ``saved_model::GetInputValues``, i.e. ``Tensor::FromProto``) and ``tfrt_predict_util.cc``
  (``tensor.FromProto``): Predict inputs in ``tensor_content`` or the typed ``*_val`` fields;
- ``model_servers/server.cc``: typed ``*_val`` answers unless
  ``--enable_serialization_as_tensor_content``; the gRPC health service;
  ``--model_config_file`` wins over ``--model_name``/``--model_base_path``; numbered version
  folders (``main.cc`` flags, ``--rest_api_timeout_in_ms`` cut with 504).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.tf

MODEL = "fid"


def _build(base: Path) -> Path:
    import tensorflow as tf

    class Fid(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def default(self, x: Any) -> Any:
            return {"y": x * 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.string, name="s")])
        def strings(self, s: Any) -> Any:
            return {"echo": s, "echo_bytes": s}

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float16, name="h")])
        def half_in(self, h: Any) -> Any:
            return {"out": tf.cast(h, tf.float32) + 1.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def half_out(self, x: Any) -> Any:
            return {"out": tf.cast(x, tf.float16)}

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.uint16, name="u")])
        def u16_in(self, u: Any) -> Any:
            return {"out": tf.cast(u, tf.int32)}

    module = Fid()
    path = base / "1"
    tf.saved_model.save(
        module,
        str(path),
        signatures={
            "serving_default": module.default,
            "strings": module.strings,
            "half_in": module.half_in,
            "half_out": module.half_out,
            "u16_in": module.u16_in,
        },
    )
    return base


@pytest.fixture(scope="module")
def fid_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("fidelity") / MODEL)


@dataclass
class Backend:
    server: Any
    http: httpx.Client

    def metrics(self) -> dict[str, float]:
        text = self.http.get("/monitoring/prometheus/metrics").text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, value = line.rsplit(" ", 1)
                out[series] = float(value)
        return out


@pytest.fixture(scope="module")
def backend(fid_base: Path) -> Iterator[Backend]:
    from tensorgate.serving.backend import LocalModelServer

    with (
        LocalModelServer(MODEL, fid_base, grpc_health=True) as server,
        httpx.Client(base_url=server.rest_url, timeout=30) as http,
    ):
        yield Backend(server, http)


def _count(metrics: dict[str, float], model: str, status: str) -> float:
    return metrics.get(
        f':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}}', 0.0
    )


def _latency(metrics: dict[str, float], api: str, entrypoint: str = "REST") -> float:
    labels = f'model_name="{MODEL}",API="{api}",entrypoint="{entrypoint}"'
    return metrics.get(f":tensorflow:serving:request_latency_count{{{labels}}}", 0.0)


PREDICT = f"/v1/models/{MODEL}:predict"
B64_FF = base64.b64encode(b"\xff\x01").decode()

# (id, TF Serving source, method, path, body, HTTP status, counted model, counted status,
#  latency API label or None when the request must not be timed)
REST_ROWS = [
    ("status-get-counted", "http_server.cc", "GET", f"/v1/models/{MODEL}", None,
     200, MODEL, "OK", ""),
    ("metadata-get-counted", "http_server.cc", "GET", f"/v1/models/{MODEL}/metadata", None,
     200, MODEL, "OK", ""),
    ("version-status-probe-counted", "http_server.cc", "GET", f"/v1/models/{MODEL}/versions/1",
     None, 200, MODEL, "OK", ""),
    ("predict-api-label", "http_server.cc", "POST", PREDICT, {"inputs": [[1, 2, 3]]},
     200, MODEL, "OK", "predict"),
    ("bad-json-invalid-argument", "json_tensor.cc", "POST", PREDICT, "{not json",
     400, MODEL, "INVALID_ARGUMENT", None),
    ("no-inputs-or-instances", "json_tensor.cc", "POST", PREDICT, {"signature_name": ""},
     400, MODEL, "INVALID_ARGUMENT", None),
    ("unknown-signature", "json_tensor.cc", "POST", PREDICT,
     {"signature_name": "renamed", "inputs": [[1, 2, 3]]}, 400, MODEL, "INVALID_ARGUMENT", None),
    ("unknown-model-not-found", "http_server.cc", "GET", "/v1/models/other", None,
     404, "other", "NOT_FOUND", None),
    ("malformed-v1-path", "http_rest_api_handler.cc", "GET", "/v1/nothing", None,
     400, "", "INVALID_ARGUMENT", None),
    ("half-input-no-json", "json_tensor.cc", "POST", PREDICT,
     {"signature_name": "half_in", "inputs": [[1, 2]]}, 501, MODEL, "UNIMPLEMENTED", None),
    ("uint16-input-no-json", "json_tensor.cc", "POST", PREDICT,
     {"signature_name": "u16_in", "inputs": [[1, 2]]}, 501, MODEL, "UNIMPLEMENTED", None),
    ("half-output-no-json", "json_tensor.cc", "POST", PREDICT,
     {"signature_name": "half_out", "inputs": [[1, 2]]}, 400, MODEL, "INVALID_ARGUMENT", None),
    ("string-rank2-b64-in", "json_tensor.cc", "POST", PREDICT,
     {"signature_name": "strings", "inputs": [[{"b64": B64_FF}, "a"], ["b", "c"]]},
     200, MODEL, "OK", "predict"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("source", "method", "path", "body", "http", "model", "status", "api"),
    [pytest.param(*row[1:], id=row[0]) for row in REST_ROWS],
)
def test_rest_request_answers_and_counts_as_tf_serving(
    backend: Backend,
    source: str,
    method: str,
    path: str,
    body: Any,
    http: int,
    model: str,
    status: str,
    api: str | None,
) -> None:
    """One REST behaviour of TF Serving (``source`` in tensorflow/serving): the answer's HTTP
    status, one more ``request_count{status}`` and a latency sample only for a success."""
    before = backend.metrics()
    content = body if isinstance(body, str) else json.dumps(body) if body is not None else None
    answer = backend.http.request(method, path, content=content)
    after = backend.metrics()
    assert answer.status_code == http, answer.text
    assert _count(after, model, status) - _count(before, model, status) == 1
    for label in ("", "predict"):
        grew = _latency(after, label) - _latency(before, label)
        assert grew == (1 if label == api else 0), f"latency API={label!r} grew by {grew}"


def test_rest_string_outputs_named_bytes_come_back_as_b64(backend: Backend) -> None:
    """util/json_tensor.cc: a DT_STRING output whose name ends in ``_bytes`` is written as
    ``{"b64": ...}``; others as text. The REST client decodes both to bytes."""
    body = {"signature_name": "strings", "inputs": [[{"b64": B64_FF}, "a"]]}
    answer = backend.http.post(PREDICT, json=body).json()["outputs"]
    assert answer["echo_bytes"] == [[{"b64": B64_FF}, {"b64": base64.b64encode(b"a").decode()}]]
    assert answer["echo"][0][1] == "a"


async def test_rest_client_round_trips_non_utf8_strings(backend: Backend) -> None:
    """util/json_tensor.cc b64 in and out, through ``RestModelClient``."""
    from tensorgate.serving.rest import RestModelClient

    client = RestModelClient(backend.server.rest_url, MODEL, signature_name="strings")
    words = np.array([[b"\xff\x01", b"caf\xc3\xa9"], [b"", b"z"]], dtype=object)
    try:
        out = await client.predict({"s": words})
    finally:
        await client.aclose()
    assert out["echo_bytes"].tolist() == words.tolist()


@pytest.mark.parametrize(
    ("code", "http"),
    [("OK", 200), ("CANCELLED", 499), ("INVALID_ARGUMENT", 400), ("DEADLINE_EXCEEDED", 504),
     ("NOT_FOUND", 404), ("ALREADY_EXISTS", 409), ("PERMISSION_DENIED", 403),
     ("RESOURCE_EXHAUSTED", 429), ("FAILED_PRECONDITION", 400), ("ABORTED", 409),
     ("OUT_OF_RANGE", 400), ("UNIMPLEMENTED", 501), ("INTERNAL", 500), ("UNAVAILABLE", 503),
     ("UNAUTHENTICATED", 401), ("DATA_LOSS", 500), ("UNKNOWN", 500)],
)  # fmt: skip
def test_status_codes_map_as_http_server_cc(code: str, http: int) -> None:
    """model_servers/http_server.cc ToHTTPStatusCode, case by case."""
    from tensorgate.serving.backend import http_status

    assert http_status(code) == http


def test_rest_request_cut_at_rest_api_timeout_with_504(fid_base: Path) -> None:
    """main.cc --rest_api_timeout_in_ms: a REST request past it is DEADLINE_EXCEEDED (504)
    and counted so."""
    from tensorgate.serving.backend import LocalModelServer

    rows = np.ones((60000, 3)).tolist()
    with LocalModelServer(MODEL, fid_base, rest_api_timeout_ms=1) as server:
        answer = httpx.post(f"{server.rest_url}{PREDICT}", json={"inputs": rows}, timeout=60)
        text = httpx.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
    assert answer.status_code == 504
    assert f'request_count{{model_name="{MODEL}",status="DEADLINE_EXCEEDED"}} 1' in text


def _real_stub(target: str) -> tuple[Any, Any]:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _real_request(signature: str = "serving_default") -> Any:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((2, 3), np.float32)))
    return request


@pytest.mark.parametrize("content", [False, True], ids=["typed-val", "tensor-content-flag"])
def test_grpc_predict_answers_typed_val_unless_flag(fid_base: Path, content: bool) -> None:
    """model_servers/server.cc: Predict answers in ``float_val`` (TensorFlow's AsProtoField)
    unless --enable_serialization_as_tensor_content; counted with API="Predict" (GRPC)."""
    from tensorgate.serving.backend import LocalModelServer

    with LocalModelServer(MODEL, fid_base, tensor_content=content) as server:
        channel, stub = _real_stub(server.grpc_target)
        with channel:
            answer = stub.Predict(_real_request(), timeout=30)
        text = httpx.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
    y = answer.outputs["y"]
    assert bool(y.tensor_content) == content
    assert (len(y.float_val) == 0) == content
    labels = f'model_name="{MODEL}",API="Predict",entrypoint="GRPC"'
    assert f":tensorflow:serving:request_latency_count{{{labels}}} 1" in text
    assert f'request_count{{model_name="{MODEL}",status="OK"}} 1' in text


@pytest.mark.parametrize("encoding", ["tensor-content", "typed-val", "typed-val-one-value"])
def test_grpc_predict_takes_inputs_in_either_encoding(backend: Backend, encoding: str) -> None:
    """predict_util.cc hands request.inputs() to saved_model::GetInputValues
    (Tensor::FromProto; tfrt_predict_util.cc calls tensor.FromProto): tensor_content and
    the typed fields are both inputs, one typed value stands for the whole tensor. The
    backend reads tensor_content in place (tensors.split_predict_request) and copies it into
    aligned memory for TensorFlow; the answer must not depend on the encoding."""
    request = _real_request()
    x = np.arange(6, dtype=np.float32).reshape(2, 3) + 0.5
    tensor = request.inputs["x"]
    tensor.ClearField("tensor_content")
    if encoding == "tensor-content":
        tensor.tensor_content = x.tobytes()
    elif encoding == "typed-val":
        tensor.float_val.extend(x.ravel().tolist())
    else:
        tensor.float_val.append(4.0)
        x = np.full((2, 3), 4.0, np.float32)
    channel, stub = _real_stub(backend.server.grpc_target)
    with channel:
        answer = stub.Predict(request, timeout=30)
    y = answer.outputs["y"]
    np.testing.assert_array_equal(np.asarray(y.float_val).reshape(2, 3), x * 2)
    assert [d.size for d in y.tensor_shape.dim] == [2, 3]


async def test_grpc_metadata_is_not_counted_and_float16_works(backend: Backend) -> None:
    """prediction_service_impl.cc records GetModelMetadata in no metric; float16 travels
    over gRPC (half_val), which REST cannot carry (json_tensor.cc)."""
    from tensorgate.serving.grpc import GrpcModelClient

    before = backend.metrics()
    client = GrpcModelClient(backend.server.grpc_target, MODEL, signature_name="half_in")
    try:
        meta = await client.metadata()
        mid = backend.metrics()
        out = await client.predict({"h": np.array([[0.5, 1.5]], dtype=np.float16)})
    finally:
        await client.aclose()
    assert meta.signatures["half_in"].inputs["h"].dtype == "float16"
    assert mid == before
    np.testing.assert_array_equal(out["out"], [[1.5, 2.5]])
    assert _count(backend.metrics(), MODEL, "OK") - _count(before, MODEL, "OK") == 1


def test_grpc_health_service_answers_serving(backend: Backend) -> None:
    """server.cc --enable_grpc_healthcheck_service: "" , ModelService and
    PredictionService are SERVING (what a Kubernetes grpc readinessProbe asks)."""
    import grpc

    with grpc.insecure_channel(backend.server.grpc_target) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        assert check(b"", timeout=10) == b"\x08\x01"
        service = b"tensorflow.serving.PredictionService"
        assert check(b"\n" + bytes([len(service)]) + service, timeout=10) == b"\x08\x01"


def test_model_config_file_wins_over_name_and_base_path(fid_base: Path, tmp_path: Path) -> None:
    """server.cc / main.cc: with --model_config_file, --model_name and --model_base_path are
    ignored; the config's version policy picks the version. The config is the one the
    operator generates (manifests.models_config)."""
    from tensorgate.api.spec import ModelRef
    from tensorgate.platform.kubernetes.manifests import models_config
    from tensorgate.serving.backend import LocalModelServer

    config = tmp_path / "models.config"
    config.write_text(models_config(ModelRef(name=MODEL, version="1", uri=str(fid_base))))
    with LocalModelServer("ignored", "/does/not/exist", model_config_file=config) as server:
        assert server.model_name == MODEL and server.versions == [1]
        status = httpx.get(f"{server.rest_url}/v1/models/{MODEL}/versions/1").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"


def test_numbered_version_folders_required(fid_base: Path) -> None:
    """TF Serving's file system source serves only numeric version folders under a base path:
    a SavedModel at the base path itself is not a servable."""
    from tensorgate.errors import ConfigError
    from tensorgate.serving.backend import LocalModelServer

    with pytest.raises(ConfigError, match="numbered version folders"):
        LocalModelServer(MODEL, fid_base / "1").start()


def test_counters_are_created_lazily_per_status(fid_base: Path) -> None:
    """servables/tensorflow/util.cc: ``GetCell(model, status)`` creates a series on first
    use; a fresh server shows no request_count series at all."""
    from tensorgate.serving.backend import LocalModelServer

    with LocalModelServer(MODEL, fid_base) as server:
        text = httpx.get(f"{server.rest_url}/monitoring/prometheus/metrics").text
    assert not re.search(r"^:tensorflow:serving:request_count\{", text, re.M)


def test_process_takes_tf_serving_flags_as_the_pod_passes_them(
    fid_base: Path, tmp_path: Path
) -> None:
    """The pod's args (manifests.serving_container) in TF Serving's spelling, bool flags as
    ``--flag=true`` (model_servers/main.cc): the backend process accepts every one of them."""
    import subprocess
    import sys

    from tensorgate.api.spec import ModelRef, parse_resource
    from tensorgate.platform.kubernetes.manifests import models_config, serving_container
    from tensorgate.serving.backend import READY_WORD

    model = ModelRef(name=MODEL, version="1", uri=str(fid_base))
    config = tmp_path / "models.config"
    config.write_text(models_config(model))
    doc = {
        "apiVersion": "tensorgate.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": MODEL, "namespace": "ml"},
        "spec": {
            "model": {"name": MODEL, "version": "1", "uri": str(fid_base)},
            "contract": {
                "inputs": {"x": {"dtype": "float32", "shape": [-1, 3]}},
                "outputs": {"y": {"dtype": "float32", "shape": [-1, 3]}},
            },
        },
    }
    pod_args = serving_container(parse_resource(doc), model)["args"]
    local = {"--port": "--port=0", "--rest_api_port": "--rest_api_port=0",
             "--model_config_file": f"--model_config_file={config}"}  # fmt: skip
    args = [local.get(a.split("=", 1)[0], a) for a in pod_args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorgate.serving.backend", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(READY_WORD), proc.stderr.read() if proc.stderr else first
        assert f"model={MODEL} versions=1" in first
    finally:
        proc.terminate()
        proc.wait(timeout=30)
