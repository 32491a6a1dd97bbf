"""The local serving backend: TF Serving's REST and gRPC APIs over real TensorFlow.

It serves a TF Serving *model base path* (numeric version folders, each a SavedModel): the
highest version by default, or pinned ones. It speaks

- REST: ``GET /v1/models/<name>[/versions/<v>]`` (status), ``GET .../metadata``,
  ``POST ...:predict`` (``instances`` or ``inputs``), answered in TF Serving's JSON shapes;
- gRPC: ``PredictionService`` (``Predict``, ``GetModelMetadata``) and
  ``ModelService.GetModelStatus``;
- Prometheus: ``GET /monitoring/prometheus/metrics`` on the REST port with TF Serving's
  names: ``:tensorflow:serving:request_count{model_name,status}`` and the
  ``:tensorflow:serving:request_latency`` histogram (microseconds, labels ``model_name``,
  ``API``, ``entrypoint``; TF Serving's buckets ``10 * 1.8**i``, 33 of them).

It is the embedded backend of ``tensorgate demo``, the tests, ``tensorgate gate PATH`` and of
pods played on the local rollout platform. It is not a replacement for TF Serving in clusters.

Run as a process::

    python -m tensorgate.serving.local --model-name NAME --model-base-path PATH \\
        --rest-port 8501 --grpc-port 8500 --host 127.0.0.1 [--version N]

It prints one ``tensorgate-serving ready ...`` line on stdout once both ports answer, and exits
with status 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format  # type: ignore[import-untyped]
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tensorgate.errors import ConfigError
from tensorgate.serving.base import TF_DTYPES, numpy_dtype
from tensorgate.serving.grpc import make_tensor_proto, tensor_from_proto

__all__ = ["LocalModelServer", "find_versions", "main"]

log = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow/serving/predict"
METRICS_PATH = "/monitoring/prometheus/metrics"
READY_WORD = "tensorgate-serving ready"

_HTTP_STATUS = {
    "OK": 200,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_GRPC_CODES = {c.name: c for c in grpc.StatusCode}
_LATENCY_BOUNDS_US = [10.0 * 1.8**i for i in range(33)]


class RequestError(Exception):
    """A request the servable refuses; ``code`` is a gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def find_versions(path: str | os.PathLike[str]) -> dict[int, Path]:
    """Versions under a model base path, or ``{n: path}`` for a SavedModel folder itself.

    A SavedModel folder whose name is a number keeps that number; otherwise it is version 1.
    """
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"model path {root}: not a directory")
    if (root / "saved_model.pb").is_file():
        return {int(root.name) if root.name.isdigit() else 1: root}
    versions = {
        int(child.name): child
        for child in root.iterdir()
        if child.name.isdigit() and (child / "saved_model.pb").is_file()
    }
    if not versions:
        raise ConfigError(
            f"model path {root}: no SavedModel (expected saved_model.pb or numeric version "
            "folders holding one)"
        )
    return versions


@dataclass
class _Servable:
    version: int
    path: Path
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
    functions: Mapping[str, Any]
    loaded: Any

    @classmethod
    def load(cls, version: int, path: Path) -> _Servable:
        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString((path / "saved_model.pb").read_bytes())
        meta = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), None)
        if meta is None:
            raise ConfigError(f"{path}: no meta graph tagged 'serve'")
        loaded = tf.saved_model.load(str(path), tags=["serve"])
        defs = {
            k: v
            for k, v in meta.signature_def.items()
            if k in loaded.signatures and not k.startswith("__")
        }
        functions = {k: loaded.signatures[k] for k in defs}
        return cls(version, path, defs, functions, loaded)

    def run(
        self, signature_name: str, inputs: Mapping[str, Any], *, strict_dtypes: bool
    ) -> dict[str, np.ndarray]:
        name = signature_name or "serving_default"
        sig = self.signature_defs.get(name)
        if sig is None:
            raise RequestError(
                "INVALID_ARGUMENT",
                f'Serving signature name: "{name}" not found in signature def',
            )
        missing = sorted(set(sig.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(sig.inputs))
        if missing or extra:
            raise RequestError(
                "INVALID_ARGUMENT",
                f"input names do not match the signature: missing {missing}, unexpected "
                f"{extra} (signature inputs {sorted(sig.inputs)})",
            )
        feeds: dict[str, Any] = {}
        for key, value in inputs.items():
            want = TF_DTYPES.get(_tf_dtype_name(sig.inputs[key].dtype), "")
            arr = value if isinstance(value, np.ndarray) else None
            if strict_dtypes and arr is not None and _dtype_name(arr) != want:
                raise RequestError(
                    "INVALID_ARGUMENT",
                    f"input {key!r}: expects {want} but {_dtype_name(arr)} is provided",
                )
            try:
                arr = np.asarray(value, dtype=numpy_dtype(want)) if want else np.asarray(value)
            except (TypeError, ValueError) as exc:
                raise RequestError("INVALID_ARGUMENT", f"input {key!r}: {exc}") from exc
            feeds[key] = tf.constant(arr)
        try:
            result = self.functions[name](**feeds)
        except tf.errors.OpError as exc:
            raise RequestError(_op_error_code(exc), _condense(exc.message)) from exc
        except (TypeError, ValueError) as exc:
            raise RequestError("INVALID_ARGUMENT", str(exc).splitlines()[0]) from exc
        return {k: v.numpy() for k, v in result.items()}


def _condense(message: str) -> str:
    """TF's multi-line op error, reduced to the lines that say what went wrong."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[{{node")
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(noise)]
    return "; ".join(useful) or message.strip()


def _tf_dtype_name(dtype: int) -> str:
    return str(types_pb2.DataType.Name(dtype))


def _dtype_name(arr: np.ndarray) -> str:
    return "string" if arr.dtype.kind in "OSU" else arr.dtype.name


def _op_error_code(exc: tf.errors.OpError) -> str:
    names = {
        tf.errors.INVALID_ARGUMENT: "INVALID_ARGUMENT",
        tf.errors.NOT_FOUND: "NOT_FOUND",
        tf.errors.FAILED_PRECONDITION: "FAILED_PRECONDITION",
        tf.errors.OUT_OF_RANGE: "OUT_OF_RANGE",
        tf.errors.UNIMPLEMENTED: "UNIMPLEMENTED",
        tf.errors.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
    }
    return names.get(exc.error_code, "INTERNAL")


class _Metrics:
    """TF Serving's request metrics, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._hist: dict[tuple[str, str, str], list[float]] = {}

    def record(self, model: str, api: str, entrypoint: str, status: str, latency_us: float) -> None:
        with self._lock:
            key = (model, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            if status != "OK":  # TF Serving records latency of successful requests only
                return
            h = self._hist.setdefault(
                (model, api, entrypoint), [0.0] * (len(_LATENCY_BOUNDS_US) + 2)
            )
            for i, bound in enumerate(_LATENCY_BOUNDS_US):
                if latency_us <= bound:
                    h[i] += 1
            h[-2] += latency_us
            h[-1] += 1

    def render(self) -> str:
        lines = [
            "# TYPE :tensorflow:serving:request_count counter",
        ]
        with self._lock:
            for (model, status), count in sorted(self._counts.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}}'
                    f" {count}"
                )
            lines.append("# TYPE :tensorflow:serving:request_latency histogram")
            for (model, api, entry), h in sorted(self._hist.items()):
                labels = f'model_name="{model}",API="{api}",entrypoint="{entry}"'
                for bound, cum in zip(_LATENCY_BOUNDS_US, h, strict=False):
                    lines.append(
                        f':tensorflow:serving:request_latency_bucket{{{labels},le="{bound:g}"}}'
                        f" {cum:g}"
                    )
                lines.append(
                    f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}} {h[-1]:g}'
                )
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {h[-2]:g}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {h[-1]:g}")
        return "\n".join(lines) + "\n"


_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+))?(?:/(?P<meta>metadata))?"
    r"(?::(?P<verb>predict|classify|regress))?$"
)


class LocalModelServer:
    """Serve one model's versions over REST and gRPC on ``host`` (ports 0 pick free ones)."""

    def __init__(
        self,
        model_name: str,
        model_base_path: str | os.PathLike[str],
        *,
        versions: Sequence[int] | None = None,
        host: str = "127.0.0.1",
        rest_port: int = 0,
        grpc_port: int = 0,
        grpc_workers: int = 8,
    ) -> None:
        self.model_name = model_name
        self.model_base_path = Path(model_base_path)
        self.host = host
        self._want_versions = list(versions) if versions else None
        self._rest_port = rest_port
        self._grpc_port = grpc_port
        self._grpc_workers = grpc_workers
        self._servables: dict[int, _Servable] = {}
        self.metrics = _Metrics()
        self._httpd: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc_server: grpc.Server | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalModelServer:
        found = find_versions(self.model_base_path)
        if self._want_versions:
            unknown = sorted(set(self._want_versions) - set(found))
            if unknown:
                raise ConfigError(
                    f"model {self.model_name}: version(s) {unknown} not under "
                    f"{self.model_base_path} (found {sorted(found)})"
                )
            chosen = self._want_versions
        else:
            chosen = [max(found)]
        for v in chosen:
            self._servables[v] = _Servable.load(v, found[v])
        self._start_grpc()
        self._start_rest()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0.5).wait()
            self._grpc_server = None

    def __enter__(self) -> LocalModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def versions(self) -> list[int]:
        return sorted(self._servables)

    @property
    def rest_port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def grpc_port(self) -> int:
        if self._grpc_server is None:
            raise RuntimeError("server not started")
        return self._grpc_port

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    # -- model logic shared by both transports ----------------------------------------------

    def servable(self, name: str, version: int | None) -> _Servable:
        if name != self.model_name:
            raise RequestError("NOT_FOUND", f"Servable not found for request: Latest({name})")
        if version is None:
            return self._servables[max(self._servables)]
        if version not in self._servables:
            raise RequestError(
                "NOT_FOUND", f"Servable not found for request: Specific({name}, {version})"
            )
        return self._servables[version]

    def signature_def_map(self, servable: _Servable) -> get_model_metadata_pb2.SignatureDefMap:
        defs = get_model_metadata_pb2.SignatureDefMap()
        for k, v in servable.signature_defs.items():
            defs.signature_def[k].CopyFrom(v)
        return defs

    def timed_predict(
        self,
        entrypoint: str,
        name: str,
        version: int | None,
        signature: str,
        inputs: Mapping[str, Any],
        *,
        strict_dtypes: bool,
    ) -> tuple[_Servable, dict[str, np.ndarray]]:
        start = time.perf_counter()
        status = "OK"
        try:
            servable = self.servable(name, version)
            return servable, servable.run(signature, inputs, strict_dtypes=strict_dtypes)
        except RequestError as exc:
            status = exc.code
            raise
        except Exception:
            status = "INTERNAL"
            raise
        finally:
            latency_us = (time.perf_counter() - start) * 1e6
            self.metrics.record(name, "Predict", entrypoint, status, latency_us)

    # -- gRPC ---------------------------------------------------------------------------------

    def _start_grpc(self) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._grpc_workers),
            options=[
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionServicer(self), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelServicer(self), server)
        port = server.add_insecure_port(f"{self.host}:{self._grpc_port}")
        if port == 0:
            raise ConfigError(f"cannot bind gRPC on {self.host}:{self._grpc_port}")
        self._grpc_port = port
        server.start()
        self._grpc_server = server

    # -- REST ---------------------------------------------------------------------------------

    def _start_rest(self) -> None:
        owner = self

        class Handler(_RestHandler):
            server_owner = owner

        httpd = ThreadingHTTPServer((self.host, self._rest_port), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._http_thread = threading.Thread(
            target=httpd.serve_forever, name=f"rest-{self.model_name}", daemon=True
        )
        self._http_thread.start()

    def status_json(self, name: str, version: int | None) -> dict[str, Any]:
        if version is not None:
            chosen = [self.servable(name, version)]
        else:
            self.servable(name, None)
            chosen = [self._servables[v] for v in sorted(self._servables, reverse=True)]
        return {
            "model_version_status": [
                {
                    "version": str(s.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for s in chosen
            ]
        }

    def metadata_json(self, name: str, version: int | None) -> dict[str, Any]:
        servable = self.servable(name, version)
        defs = json_format.MessageToDict(
            self.signature_def_map(servable), preserving_proto_field_name=True
        )
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": defs},
        }

    def predict_json(self, name: str, version: int | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise RequestError("INVALID_ARGUMENT", "JSON Value: request body must be an object")
        signature = str(body.get("signature_name") or "serving_default")
        servable = self.servable(name, version)
        sig = servable.signature_defs.get(signature)
        if sig is None:
            raise RequestError(
                "INVALID_ARGUMENT",
                f'Serving signature name: "{signature}" not found in signature def',
            )
        input_names = list(sig.inputs)
        row_format = "instances" in body
        if row_format == ("inputs" in body):
            raise RequestError(
                "INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key (exactly one is needed)"
            )
        if row_format:
            instances = body["instances"]
            if not isinstance(instances, list) or not instances:
                raise RequestError("INVALID_ARGUMENT", "'instances' must be a non-empty list")
            if isinstance(instances[0], dict):
                inputs = {k: [row.get(k) for row in instances] for k in instances[0]}
            elif len(input_names) == 1:
                inputs = {input_names[0]: instances}
            else:
                raise RequestError(
                    "INVALID_ARGUMENT",
                    "instances must be objects naming every input (the signature has "
                    f"{len(input_names)} inputs)",
                )
        else:
            raw = body["inputs"]
            if isinstance(raw, dict):
                inputs = dict(raw)
            elif len(input_names) == 1:
                inputs = {input_names[0]: raw}
            else:
                raise RequestError(
                    "INVALID_ARGUMENT", "'inputs' must name every input of a multi-input signature"
                )
        inputs = {k: _from_json(v) for k, v in inputs.items()}
        _, outputs = self.timed_predict(
            "REST", name, version, signature, inputs, strict_dtypes=False
        )
        if row_format:
            batch = {len(v) if v.ndim else 1 for v in outputs.values()}
            if len(outputs) == 1:
                return {"predictions": _to_json(next(iter(outputs.values())))}
            if len(batch) != 1:
                raise RequestError(
                    "INVALID_ARGUMENT",
                    "output tensors disagree on the batch size; use the 'inputs' format",
                )
            cols = {k: _to_json(v) for k, v in outputs.items()}
            return {"predictions": [{k: cols[k][i] for k in cols} for i in range(batch.pop())]}
        if len(outputs) == 1:
            return {"outputs": _to_json(next(iter(outputs.values())))}
        return {"outputs": {k: _to_json(v) for k, v in outputs.items()}}


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and "b64" in value:
        import base64

        return np.array([base64.b64decode(value["b64"])], dtype=object)
    return value


def _to_json(arr: np.ndarray) -> Any:
    if arr.dtype.kind in "OS":
        flat = [x.decode(errors="replace") if isinstance(x, bytes) else x for x in arr.ravel()]
        return np.array(flat, dtype=object).reshape(arr.shape).tolist()
    return arr.tolist()


class _RestHandler(BaseHTTPRequestHandler):
    server_owner: LocalModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("rest %s", format % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode())

    def _error(self, exc: RequestError) -> None:
        self._send_json(_HTTP_STATUS.get(exc.code, 500), {"error": exc.message})

    def do_GET(self) -> None:
        owner = self.server_owner
        if self.path == METRICS_PATH:
            self._send(200, owner.metrics.render().encode(), "text/plain; version=0.0.4")
            return
        match = _URL.match(self.path)
        if not match or match["verb"]:
            self._send_json(404, {"error": f"Malformed request: GET {self.path}"})
            return
        version = int(match["version"]) if match["version"] else None
        try:
            if match["meta"]:
                self._send_json(200, owner.metadata_json(match["name"], version))
            else:
                self._send_json(200, owner.status_json(match["name"], version))
        except RequestError as exc:
            self._error(exc)

    def do_POST(self) -> None:
        owner = self.server_owner
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        match = _URL.match(self.path)
        if not match or match["verb"] is None or match["meta"]:
            self._send_json(404, {"error": f"Malformed request: POST {self.path}"})
            return
        if match["verb"] != "predict":
            self._send_json(501, {"error": f"{match['verb']} is not supported"})
            return
        version = int(match["version"]) if match["version"] else None
        try:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise RequestError("INVALID_ARGUMENT", f"JSON Parse error: {exc}") from exc
            self._send_json(200, owner.predict_json(match["name"], version, body))
        except RequestError as exc:
            self._error(exc)
        except Exception as exc:  # a model that crashes must not kill the server
            log.exception("predict failed")
            self._send_json(500, {"error": f"{type(exc).__name__}: {exc}"})


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, owner: LocalModelServer) -> None:
        self.owner = owner

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        signature = spec.signature_name or "serving_default"
        try:
            inputs = {k: tensor_from_proto(v) for k, v in request.inputs.items()}
        except Exception as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad input tensor: {exc}")
        try:
            servable, outputs = self.owner.timed_predict(
                "GRPC", spec.name, version, signature, inputs, strict_dtypes=True
            )
        except RequestError as exc:
            context.abort(_GRPC_CODES.get(exc.code, grpc.StatusCode.INTERNAL), exc.message)
        except Exception as exc:
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(make_tensor_proto(value))
        return response

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        if list(request.metadata_field) != ["signature_def"]:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Metadata field must be exactly ['signature_def']",
            )
        try:
            servable = self.owner.servable(spec.name, version)
        except RequestError as exc:
            context.abort(_GRPC_CODES[exc.code], exc.message)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(self.owner.signature_def_map(servable))
        return response


class _ModelServicer(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, owner: LocalModelServer) -> None:
        self.owner = owner

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        try:
            body = self.owner.status_json(spec.name, version)
        except RequestError as exc:
            context.abort(_GRPC_CODES[exc.code], exc.message)
        response = get_model_status_pb2.GetModelStatusResponse()
        for item in body["model_version_status"]:
            entry = response.model_version_status.add()
            entry.version = int(item["version"])
            entry.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


@contextmanager
def serving(
    model_name: str, model_base_path: str | os.PathLike[str], **kwargs: Any
) -> Iterator[LocalModelServer]:
    """Serve for the duration of a ``with`` block."""
    server = LocalModelServer(model_name, model_base_path, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tensorgate.serving.local",
        description="Serve a TF Serving model base path over TF Serving's REST and gRPC APIs.",
    )
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--model-base-path", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rest-port", type=int, default=8501)
    parser.add_argument("--grpc-port", type=int, default=8500)
    parser.add_argument(
        "--version", type=int, action="append", help="serve this version (repeatable)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = LocalModelServer(
            args.model_name,
            args.model_base_path,
            versions=args.version,
            host=args.host,
            rest_port=args.rest_port,
            grpc_port=args.grpc_port,
        ).start()
    except (ConfigError, OSError) as exc:
        print(f"tensorgate-serving: {exc}", file=sys.stderr, flush=True)
        return 2
    print(
        f"{READY_WORD} model={server.model_name} versions={','.join(map(str, server.versions))} "
        f"rest={server.host}:{server.rest_port} grpc={server.host}:{server.grpc_port}",
        flush=True,
    )
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
