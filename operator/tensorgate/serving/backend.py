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

Run as a process, with TF Serving's own flags (``tensorflow_model_server``'s spelling; the
dashed forms of the first four are kept)::

    python -m tensorgate.serving.backend --model_name NAME --model_base_path PATH \\
        --rest_api_port 8501 --port 8500 --host 127.0.0.1 [--version N] \\
        [--model_config_file FILE] [--rest_api_timeout_in_ms MS] \\
        [--enable_serialization_as_tensor_content] [--enable_grpc_healthcheck_service] \\
        [--monitoring_config_file FILE] [--parent-pid PID]

As ``model_servers/main.cc`` and ``server.cc`` do, ``--model_config_file`` wins over
``--model_name`` / ``--model_base_path`` (its ``model_version_policy`` chooses the versions),
and version folders must be numbered. Where it answers as TF Serving does (the fidelity table
in tests/integration/gate/test_serving_fidelity.py):

- every ``/v1/...`` REST request counts in ``request_count`` (status and metadata GETs and
  probes too, a malformed path with an empty model name), every gRPC Predict too, created
  lazily per status; ``request_latency`` only for successful ones, ``API="predict"`` for REST
  predicts, ``""`` for REST GETs, ``"Predict"`` for gRPC (``model_servers/http_server.cc``,
  ``prediction_service_impl.cc``, ``servables/tensorflow/util.cc``);
- status codes map to HTTP as ``http_server.cc`` ``ToHTTPStatusCode`` does; a REST request
  is cut at ``--rest_api_timeout_in_ms`` with 504;
- gRPC Predict answers in the typed ``*_val`` fields unless
  ``--enable_serialization_as_tensor_content``;
- REST JSON (``util/json_tensor.cc``): ``{"b64": ...}`` strings in and, for DT_STRING outputs
  named ``*_bytes``, out; no conversion for DT_HALF / DT_UINT16 inputs (501) nor DT_HALF
  outputs (400).

It prints one ``tensorgate-serving ready ...`` line on stdout once both ports answer, and exits
with status 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import base64
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
from google.protobuf import json_format, text_format  # type: ignore[import-untyped]
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from tensorgate.errors import ConfigError
from tensorgate.processes import exit_with_parent
from tensorgate.serving.base import TF_DTYPES, numpy_dtype
from tensorgate.serving.tensors import keep_freed_memory, pack, split_predict_request, unpack

__all__ = ["LocalModelServer", "find_versions", "main"]

log = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow/serving/predict"
METRICS_PATH = "/monitoring/prometheus/metrics"
READY_WORD = "tensorgate-serving ready"

# model_servers/http_server.cc ToHTTPStatusCode; anything else is 500.
HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
DEFAULT_REST_TIMEOUT_MS = 30000  # model_servers/main.cc --rest_api_timeout_in_ms
BYTES_SUFFIX = "_bytes"  # util/json_tensor.cc kBytesTensorNameSuffix
_NO_JSON_INPUT = {"DT_HALF", "DT_UINT16"}  # util/json_tensor.cc: no JSON -> tensor conversion
_NO_JSON_OUTPUT = {"DT_HALF"}  # util/json_tensor.cc: no tensor -> JSON conversion
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_HEALTH_SERVICES = {"", "tensorflow.serving.ModelService", "tensorflow.serving.PredictionService"}
_GRPC_CODES = {c.name: c for c in grpc.StatusCode}
_LATENCY_BOUNDS_US = [10.0 * 1.8**i for i in range(33)]


class RequestError(Exception):
    """A request the servable refuses; ``code`` is a gRPC status name."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def http_status(code: str) -> int:
    """The HTTP status TF Serving's REST server answers for a canonical error code."""
    return HTTP_STATUS.get(code, 500)


def find_versions(
    path: str | os.PathLike[str], *, require_version_folders: bool = True
) -> dict[int, Path]:
    """Versions under a model base path: numbered folders each holding a SavedModel.

    TF Serving serves only numbered version folders (a SavedModel at the base path itself is
    not served). With ``require_version_folders=False`` (``tensorgate gate PATH``) a SavedModel
    folder itself is version ``int(name)`` or 1.
    """
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"model path {root}: not a directory")
    if (root / "saved_model.pb").is_file():
        if require_version_folders:
            raise ConfigError(
                f"model path {root}: a SavedModel, not a model base path; TF Serving needs "
                f"numbered version folders (move it to {root}/1/)"
            )
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
        """Load one version; a folder that holds no loadable SavedModel (a corrupt
        ``saved_model.pb``, missing variables) is a ``ConfigError`` naming it. TF Serving
        fails the same way at start-up: ``model_servers/server_core.cc`` returns the load
        error from ``ConnectAdaptersToManagerAndAwaitModelLoads``, so ``server.cc``'s
        ``BuildAndStart`` fails and the server exits without opening a port."""
        saved = saved_model_pb2.SavedModel()
        try:
            saved.ParseFromString((path / "saved_model.pb").read_bytes())
        except (DecodeError, OSError) as exc:
            raise ConfigError(f"{path}: saved_model.pb is not a SavedModel ({exc})") from exc
        meta = next((m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags), None)
        if meta is None:
            raise ConfigError(f"{path}: no meta graph tagged 'serve'")
        try:
            loaded = tf.saved_model.load(str(path), tags=["serve"])
        except (tf.errors.OpError, OSError, ValueError) as exc:
            detail = _condense(str(exc))[:300]
            raise ConfigError(
                f"{path}: cannot load the SavedModel ({type(exc).__name__}: {detail})"
            ) from exc
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
            feeds[key] = _as_tensor(arr)
        try:
            result = self.functions[name](**feeds)
        except tf.errors.OpError as exc:
            raise RequestError(_op_error_code(exc), _condense(exc.message)) from exc
        except (TypeError, ValueError) as exc:
            raise RequestError("INVALID_ARGUMENT", str(exc).splitlines()[0]) from exc
        return {k: v.numpy() for k, v in result.items()}


# dtypes handed to TensorFlow through DLPack (numpy and TensorFlow agree on all of them).
_DLPACK_DTYPES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16"}
    | {"uint32", "uint64"}
)
_TF_ALIGN = 64  # EIGEN_MAX_ALIGN_BYTES: TensorFlow refuses (aborts on) less aligned buffers


def _as_tensor(arr: np.ndarray) -> Any:
    """``arr`` as an eager tensor, copied once: into a 64-byte aligned numpy buffer that
    TensorFlow then takes over through DLPack. (``tf.constant`` copies at a third of the
    speed and a view of the request's bytes cannot be handed over: read-only, unaligned.)"""
    if arr.dtype.name not in _DLPACK_DTYPES or arr.size == 0:
        return tf.constant(arr)
    raw = np.empty(arr.nbytes + _TF_ALIGN, dtype=np.uint8)
    skip = -raw.ctypes.data % _TF_ALIGN
    out = raw[skip : skip + arr.nbytes].view(arr.dtype.name).reshape(arr.shape)
    np.copyto(out, arr)
    return tf.experimental.dlpack.from_dlpack(out.__dlpack__())


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


# model_servers/http_rest_api_util.cc ParseModelInfo: /v1/models/<name>[/versions/<n> |
# /labels/<l>][/metadata | :<method>]; anything else under /v1/ is a malformed request.
_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>-?[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:/(?P<meta>metadata))?(?::(?P<verb>predict|classify|regress))?$"
)


@dataclass(frozen=True)
class ModelConfig:
    """The one model a server serves: name, base path and the versions to load (None:
    the newest, TF Serving's default ``latest { num_versions: 1 }``)."""

    name: str
    base_path: Path
    versions: tuple[int, ...] | None = None
    all_versions: bool = False
    latest: int = 1


def read_model_config(path: str | os.PathLike[str]) -> ModelConfig:
    """Parse a ``--model_config_file`` (text ``ModelServerConfig``) naming one model."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(Path(path).read_text(), config)
    except (OSError, text_format.ParseError) as exc:
        raise ConfigError(f"--model_config_file {path}: {exc}") from exc
    models = list(config.model_config_list.config)
    if len(models) != 1:
        raise ConfigError(
            f"--model_config_file {path}: names {len(models)} models; this backend serves one"
        )
    model = models[0]
    policy = model.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "specific":
        return ModelConfig(model.name, Path(model.base_path), tuple(policy.specific.versions))
    if kind == "all":
        return ModelConfig(model.name, Path(model.base_path), all_versions=True)
    latest = policy.latest.num_versions if kind == "latest" else 1
    return ModelConfig(model.name, Path(model.base_path), latest=max(1, latest))


class LocalModelServer:
    """Serve one model's versions over REST and gRPC on ``host`` (ports 0 pick free ones).

    ``model_config_file`` (TF Serving's ``--model_config_file``) wins over ``model_name``,
    ``model_base_path`` and ``versions``. ``rest_api_timeout_ms`` cuts REST requests with 504;
    ``tensor_content`` answers gRPC Predict in ``tensor_content`` instead of the typed
    fields; ``grpc_health`` adds the ``grpc.health.v1.Health`` service.
    """

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
        model_config_file: str | os.PathLike[str] | None = None,
        rest_api_timeout_ms: int = DEFAULT_REST_TIMEOUT_MS,
        tensor_content: bool = False,
        grpc_health: bool = False,
        require_version_folders: bool = True,
    ) -> None:
        if model_config_file is not None:
            self.config = read_model_config(model_config_file)
        else:
            self.config = ModelConfig(
                model_name, Path(model_base_path), tuple(versions) if versions else None
            )
        self.model_name = self.config.name
        self.model_base_path = self.config.base_path
        self.host = host
        self.rest_api_timeout_ms = rest_api_timeout_ms
        self.tensor_content = tensor_content
        self.grpc_health = grpc_health
        self._require_version_folders = require_version_folders
        self._rest_port = rest_port
        self._grpc_port = grpc_port
        self._grpc_workers = grpc_workers
        self._servables: dict[int, _Servable] = {}
        self.metrics = _Metrics()
        self._httpd: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc_server: grpc.Server | None = None
        self._rest_pool = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="rest")

    # -- lifecycle ---------------------------------------------------------------------------

    def _chosen_versions(self, found: Mapping[int, Path]) -> list[int]:
        config = self.config
        if config.versions:
            unknown = sorted(set(config.versions) - set(found))
            if unknown:
                raise ConfigError(
                    f"model {self.model_name}: version(s) {unknown} not under "
                    f"{self.model_base_path} (found {sorted(found)})"
                )
            return list(config.versions)
        if config.all_versions:
            return sorted(found)
        return sorted(found)[-config.latest :]

    def start(self) -> LocalModelServer:
        found = find_versions(
            self.model_base_path, require_version_folders=self._require_version_folders
        )
        for v in self._chosen_versions(found):
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
        self._rest_pool.shutdown(wait=False, cancel_futures=True)

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

    def rest_request(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """One ``/v1/...`` REST request as ``http_server.cc`` ProcessRequest handles it:
        answered within ``rest_api_timeout_ms`` (else DEADLINE_EXCEEDED), counted whatever
        the outcome, its latency recorded when it succeeded. Returns (HTTP status, JSON)."""
        start = time.perf_counter()
        match = _URL.match(path)
        model_name = match["name"] if match else ""
        api = (match["verb"] or "") if match else ""
        future = self._rest_pool.submit(self._rest_dispatch, method, path, match, body)
        try:
            code, payload = "OK", future.result(timeout=self.rest_api_timeout_ms / 1000)
        except futures.TimeoutError:
            future.cancel()
            code = "DEADLINE_EXCEEDED"
            payload = {"error": f"Request timed out after {self.rest_api_timeout_ms} ms"}
        except RequestError as exc:
            code, payload = exc.code, {"error": exc.message}
        except Exception as exc:  # a model that crashes must not kill the server
            log.exception("REST %s %s failed", method, path)
            code, payload = "INTERNAL", {"error": f"{type(exc).__name__}: {exc}"}
        latency_us = (time.perf_counter() - start) * 1e6
        self.metrics.record(model_name, api, "REST", code, latency_us)
        return http_status(code), payload

    def _rest_dispatch(
        self, method: str, path: str, match: re.Match[str] | None, raw: bytes
    ) -> Any:
        malformed = RequestError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        if match is None or match["label"]:
            raise malformed
        version = int(match["version"]) if match["version"] else None
        if method == "GET" and not match["verb"]:
            if match["meta"]:
                return self.metadata_json(match["name"], version)
            return self.status_json(match["name"], version)
        if method != "POST" or not match["verb"] or match["meta"]:
            raise malformed
        if match["verb"] != "predict":
            raise RequestError("UNIMPLEMENTED", f"{match['verb']} is not supported here")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise RequestError("INVALID_ARGUMENT", f"JSON Parse error: {exc}") from exc
        return self.predict_json(match["name"], version, body)

    def run_predict(
        self,
        name: str,
        version: int | None,
        signature: str,
        inputs: Mapping[str, Any],
        *,
        strict_dtypes: bool,
    ) -> tuple[_Servable, dict[str, np.ndarray]]:
        servable = self.servable(name, version)
        return servable, servable.run(signature, inputs, strict_dtypes=strict_dtypes)

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
        server.add_generic_rpc_handlers((_PredictionServicer(self).handler(),))
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelServicer(self), server)
        if self.grpc_health:
            server.add_generic_rpc_handlers((_health_handler(),))
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
        if row_format and "inputs" in body:
            raise RequestError(
                "INVALID_ARGUMENT",
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys",
            )
        if not row_format and "inputs" not in body:
            raise RequestError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
        for key, info in sig.inputs.items():
            if _tf_dtype_name(info.dtype) in _NO_JSON_INPUT:
                raise RequestError(
                    "UNIMPLEMENTED",
                    f"Conversion of JSON Value to type: {_tf_dtype_name(info.dtype)} "
                    f"(input {key!r}) is not supported; use gRPC",
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
        inputs = {
            k: _from_json(v) if k in sig.inputs and _is_string(sig.inputs[k].dtype) else v
            for k, v in inputs.items()
        }
        _, outputs = self.run_predict(name, version, signature, inputs, strict_dtypes=False)
        for key, value in outputs.items():
            if value.dtype == np.float16:
                raise RequestError(
                    "INVALID_ARGUMENT",
                    f"Failed to write JSON value for tensor type: half (output {key!r})",
                )
        outputs_json = {k: _to_json(v, as_b64=k.endswith(BYTES_SUFFIX)) for k, v in outputs.items()}
        if row_format:
            batch = {len(v) if v.ndim else 1 for v in outputs.values()}
            if len(outputs) == 1:
                return {"predictions": next(iter(outputs_json.values()))}
            if len(batch) != 1:
                raise RequestError(
                    "INVALID_ARGUMENT",
                    "output tensors disagree on the batch size; use the 'inputs' format",
                )
            cols = outputs_json
            return {"predictions": [{k: cols[k][i] for k in cols} for i in range(batch.pop())]}
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs_json.values()))}
        return {"outputs": outputs_json}


def _is_string(dtype: int) -> bool:
    return _tf_dtype_name(dtype) == "DT_STRING"


def _from_json(value: Any) -> Any:
    """A JSON string tensor of any rank: ``{"b64": ...}`` leaves become bytes."""
    if isinstance(value, dict):
        if "b64" not in value:
            raise RequestError("INVALID_ARGUMENT", 'a string value object needs a "b64" key')
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise RequestError("INVALID_ARGUMENT", f"invalid base64 value: {exc}") from exc
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _to_json(arr: np.ndarray, *, as_b64: bool = False) -> Any:
    """A tensor as JSON (util/json_tensor.cc): strings as text, or ``{"b64": ...}`` for
    outputs named ``*_bytes``."""
    if arr.dtype.kind in "OS":
        if as_b64:
            leaves: list[Any] = [{"b64": base64.b64encode(bytes(x)).decode()} for x in arr.ravel()]
        else:
            leaves = [
                x.decode(errors="replace") if isinstance(x, bytes) else x for x in arr.ravel()
            ]
        out = np.empty(len(leaves), dtype=object)
        out[:] = leaves
        return out.reshape(arr.shape).tolist()
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

    def _v1(self, method: str) -> None:
        raw = b""
        if method == "POST":
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, payload = self.server_owner.rest_request(method, self.path, raw)
        self._send_json(status, payload)

    def do_GET(self) -> None:
        if self.path == METRICS_PATH:
            text = self.server_owner.metrics.render()
            self._send(200, text.encode(), "text/plain; version=0.0.4")
        elif self.path.startswith("/v1/"):
            self._v1("GET")
        else:  # http_server.cc dispatches only /v1/...: other paths are not counted
            self._send_json(404, {"error": f"Not found: GET {self.path}"})

    def do_POST(self) -> None:
        if self.path.startswith("/v1/"):
            self._v1("POST")
        else:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self._send_json(404, {"error": f"Not found: POST {self.path}"})


def _health_handler() -> grpc.GenericRpcHandler:
    """``grpc.health.v1.Health/Check`` as ``server.cc`` enables it with
    ``--enable_grpc_healthcheck_service``: SERVING for "", ModelService and
    PredictionService (messages hand-encoded: service = field 1, status = field 1)."""

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        service = ""
        if request[:1] == b"\n":
            length = request[1]
            service = request[2 : 2 + length].decode()
        if service not in _HEALTH_SERVICES:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        return b"\x08\x01"  # status: SERVING

    return grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)}
    )


class _PredictionServicer:
    """``PredictionService``: Predict reads the request's bytes itself (the tensors' numbers
    are used where they lie, see ``tensors.split_predict_request``) and answers bytes;
    GetModelMetadata through TensorFlow Serving's own message classes."""

    def __init__(self, owner: LocalModelServer) -> None:
        self.owner = owner

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {
                "Predict": grpc.unary_unary_rpc_method_handler(self.Predict),
                "GetModelMetadata": grpc.unary_unary_rpc_method_handler(
                    self.GetModelMetadata,
                    request_deserializer=get_model_metadata_pb2.GetModelMetadataRequest.FromString,
                    response_serializer=get_model_metadata_pb2.GetModelMetadataResponse.SerializeToString,
                ),
            },
        )

    def Predict(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        start = time.perf_counter()
        try:
            head, tensors = split_predict_request(raw)
            request = predict_pb2.PredictRequest.FromString(head)
        except Exception as exc:  # grpc++ answers an unparsable message so, uncounted
            context.abort(grpc.StatusCode.INTERNAL, f"Failed to parse request: {exc}")
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        signature = spec.signature_name or "serving_default"
        code, message = "OK", ""
        try:
            try:
                inputs = {
                    k: unpack(tensor_pb2.TensorProto.FromString(proto), content)
                    for k, (proto, content) in tensors.items()
                }
            except Exception as exc:
                raise RequestError("INVALID_ARGUMENT", f"bad input tensor: {exc}") from exc
            servable, outputs = self.owner.run_predict(
                spec.name, version, signature, inputs, strict_dtypes=True
            )
        except RequestError as exc:
            code, message = exc.code, exc.message
        except Exception as exc:
            code, message = "INTERNAL", f"{type(exc).__name__}: {exc}"
        # prediction_service_impl.cc: latency when OK, the count always
        latency_us = (time.perf_counter() - start) * 1e6
        self.owner.metrics.record(spec.name, "Predict", "GRPC", code, latency_us)
        if code != "OK":
            context.abort(_GRPC_CODES.get(code, grpc.StatusCode.INTERNAL), message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for name, value in outputs.items():
            pack(value, response.outputs[name], content=self.owner.tensor_content)
        return bytes(response.SerializeToString())

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


def _flag_bool(text: str) -> bool:
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tensorgate.serving.backend",
        description="Serve a TF Serving model base path over TF Serving's REST and gRPC APIs "
        "(tensorflow_model_server's flags).",
    )
    parser.add_argument("--model_name", "--model-name", dest="model_name", default="default")
    parser.add_argument("--model_base_path", "--model-base-path", dest="model_base_path")
    parser.add_argument("--model_config_file", help="wins over --model_name/--model_base_path")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--rest_api_port", "--rest-port", dest="rest_port", type=int, default=8501)
    parser.add_argument("--port", "--grpc-port", dest="grpc_port", type=int, default=8500)
    parser.add_argument("--rest_api_timeout_in_ms", type=int, default=DEFAULT_REST_TIMEOUT_MS)
    for flag in ("--enable_serialization_as_tensor_content", "--enable_grpc_healthcheck_service"):
        # TF Serving's bool flags: --flag, --flag=true, --flag=false
        parser.add_argument(flag, nargs="?", const=True, default=False, type=_flag_bool)
    parser.add_argument("--monitoring_config_file", help="accepted; metrics are always on")
    parser.add_argument(
        "--version", type=int, action="append", help="serve this version (repeatable)"
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        help="exit once this process is no longer the parent (rollout --local sets it)",
    )
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        exit_with_parent(args.parent_pid)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.model_config_file is None and args.model_base_path is None:
        parser.error("one of --model_config_file or --model_base_path is required")

    keep_freed_memory()  # every request is a multi-MiB buffer: reuse pages, no faults
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = LocalModelServer(
            args.model_name,
            args.model_base_path or "",
            versions=args.version,
            host=args.host,
            rest_port=args.rest_port,
            grpc_port=args.grpc_port,
            model_config_file=args.model_config_file,
            rest_api_timeout_ms=args.rest_api_timeout_in_ms,
            tensor_content=args.enable_serialization_as_tensor_content,
            grpc_health=args.enable_grpc_healthcheck_service,
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
