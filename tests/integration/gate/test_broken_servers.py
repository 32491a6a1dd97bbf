"""Fake TF Serving servers on 127.0.0.1 that answer wrongly on purpose (REST and gRPC).

A healthy server of this kind serves one model (``m``, version 1) whose signature is the
gate unit tests' contract (``tests/unit/gate/conftest.py``: input ``x`` float32 [-1, 4],
output ``probs`` float32 [-1, 3], a softmax), in TF Serving's wire formats:

- REST, as ``model_servers/http_rest_api_handler.cc`` routes it: ``GET
  /v1/models/m/versions/1/metadata`` (a ``GetModelMetadataResponse`` as JSON) and ``POST
  /v1/models/m/versions/1:predict``; the columnar answer of a single output is the bare tensor
  under ``outputs`` (``util/json_tensor.cc``, ``MakeJsonFromTensors``), and a NaN float is
  written as the bare token ``NaN`` (``util/json_tensor.cc``, ``WriteDecimal``).
- gRPC: ``PredictionService/GetModelMetadata`` (the ``SignatureDefMap`` Any-packed under
  ``metadata["signature_def"]``) and ``PredictionService/Predict`` answering with typed
  ``float_val`` fields, as TF Serving does without ``--enable_serialization_as_tensor_content``.

``Behaviour`` says how it breaks. The servers count their requests (retries show there).
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tensorgate.checks import PlatformChecker
from tensorgate.cli import app
from tensorgate.errors import ServingError
from tensorgate.platform.base import Body
from tensorgate.platform.fake import FakePlatform, FakeRouter
from tensorgate.reconcile import Reconciler
from tensorgate.serving.base import ClientOptions
from tensorgate.serving.protos import serving_apis_pb2 as apis
from tensorgate.serving.rest import RestModelClient
from tensorgate.serving.tensors import DTYPE_ENUM, pack, unpack
from tests.unit.gate.conftest import N_CLASSES, N_FEATURES, good_fn, make_contract

MODEL = "m"
VERSION = 1
SLOW_S = 30.0  # the "answers correctly after 30 s per call"
BATCH_DELAY_S = 0.5  # SLOW_BATCHES: well under --timeout-s, on every golden-set batch
SMOKE_ROWS = 4  # smoke.batchSize: a predict of more rows is a golden-set batch


class Behaviour(StrEnum):
    HEALTHY = "healthy"
    GARBAGE = "garbage"  # 200 with a body that is not JSON / not a PredictResponse
    ALWAYS_5XX = "always-5xx"  # 503 / UNAVAILABLE on every request, metadata too
    SOMETIMES_5XX = "sometimes-5xx"  # every 2nd predict: 500 / INTERNAL
    FLAKY_503 = "flaky-503"  # each predict's first attempt: 503 / UNAVAILABLE; its retry right
    WRONG_SHAPE = "wrong-shape"  # 200 with [batch, 2] for a [batch, 3] output
    HANGS = "hangs"  # predict never answers
    SLOW = "slow"  # predict answers correctly after 30 s
    CLOSES = "closes"  # the answer's first half, then the connection closes
    NAN = "nan"  # NaN in every output
    DIFFERS = "differs"  # metadata matches the contract; predict gives uniform probabilities
    STRINGS = "strings"  # metadata matches; predict answers a float output with text
    TRICKLE = "trickle"  # REST, golden-set batches: 200, then one byte every 0.5 s
    FLOOD = "flood"  # REST, golden-set batches: 200, then 64 KiB every 30 ms (~2 MB/s), endless
    SLOW_BATCHES = "slow-batches"  # golden-set batches: right, after BATCH_DELAY_S each
    # Answers that parse but are no tensor of the signature's outputs:
    NO_ROWS = "no-rows"  # 200 with zero rows for a batch of n
    RAGGED = "ragged"  # REST: rows of different lengths; gRPC: tensor_content not whole floats
    MIXED_KEYS = "mixed-keys"  # REST row format: the rows name different outputs
    DEEP = "deep"  # REST: JSON nested 100,000 deep; gRPC: a dimension of -3
    RENAMED = "renamed"  # metadata names the input `features` (was `x`): a contract change


@dataclass
class Counter:
    metadata: int = 0
    predict: int = 0
    failed: int = 0
    slow: int = 0  # SLOW_BATCHES: golden-set batches begun
    bodies: set[bytes] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> int:
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)
            return int(getattr(self, what))

    def first_time(self, body: bytes) -> bool:
        with self.lock:
            new = body not in self.bodies
            self.bodies.add(body)
            return new


@dataclass
class FakeServer:
    behaviour: Behaviour
    release: threading.Event = field(default_factory=threading.Event)
    cut: threading.Event = field(default_factory=threading.Event)  # gRPC CLOSES: cut now
    seen: Counter = field(default_factory=Counter)
    port: int = 0

    @property
    def input_name(self) -> str:
        return "features" if self.behaviour is Behaviour.RENAMED else "x"

    def outputs(self, x: np.ndarray, n: int) -> dict[str, np.ndarray] | None:
        """What predict ``n`` (1-based) answers for ``x``; None: no answer at all (hang)."""
        b = self.behaviour
        if b is Behaviour.HANGS:
            self.release.wait()
            return None
        if b is Behaviour.SLOW:
            self.release.wait(SLOW_S)
        if b is Behaviour.SLOW_BATCHES and len(x) > SMOKE_ROWS:
            self.seen.count("slow")
            self.release.wait(BATCH_DELAY_S)
        probs = good_fn({"x": x})["probs"]
        if b is Behaviour.WRONG_SHAPE:
            return {"probs": probs[:, :2]}
        if b is Behaviour.NAN:
            return {"probs": np.full_like(probs, np.nan)}
        if b is Behaviour.DIFFERS:
            return {"probs": np.full_like(probs, 1.0 / N_CLASSES)}
        return {"probs": probs}

    def failure(self, what: str, n: int, body: bytes = b"") -> int | None:
        """The HTTP status request ``n`` of kind ``what`` fails with, if any."""
        b = self.behaviour
        if b is Behaviour.ALWAYS_5XX:
            return 503
        if what == "predict" and b is Behaviour.SOMETIMES_5XX and n % 2 == 0:
            return 500
        if what == "predict" and b is Behaviour.FLAKY_503 and self.seen.first_time(body):
            self.seen.count("failed")
            return 503
        return None


def _signature_json(input_name: str = "x") -> dict[str, Any]:
    def info(name: str, width: int) -> dict[str, Any]:
        dims = [{"size": "-1", "name": ""}, {"size": str(width), "name": ""}]
        return {
            "dtype": "DT_FLOAT",
            "tensor_shape": {"dim": dims, "unknown_rank": False},
            "name": name,
        }

    return {
        "model_spec": {"name": MODEL, "signature_name": "", "version": str(VERSION)},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {input_name: info(f"serving_default_{input_name}:0", N_FEATURES)},
                        "outputs": {"probs": info("StatefulPartitionedCall:0", N_CLASSES)},
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


def _handler(server: FakeServer) -> type[http.server.BaseHTTPRequestHandler]:
    route = re.compile(rf"/v1/models/{MODEL}/versions/\d+(/metadata|:predict)")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _dribble(self, b: Behaviour) -> None:
            """An answer that never ends: a byte at a time, or an endless flood."""
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(b'{"outputs": [')
            chunk, pause = (b" ", 0.5) if b is Behaviour.TRICKLE else (b" " * 65536, 0.03)
            with suppress(OSError):
                while not server.release.wait(pause):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            self.close_connection = True

        def do_GET(self) -> None:
            if not (found := route.fullmatch(self.path)) or found[1] != "/metadata":
                self._send(404, b'{"error": "no such path"}')
                return
            n = server.seen.count("metadata")
            status = server.failure("metadata", n)
            if status is not None:
                self._send(status, b'{"error": "model server unavailable"}')
                return
            self._send(200, json.dumps(_signature_json(server.input_name)).encode())

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            request = json.loads(raw)
            if not (found := route.fullmatch(self.path)) or found[1] != ":predict":
                self._send(404, b'{"error": "no such path"}')
                return
            n = server.seen.count("predict")
            status = server.failure("predict", n, raw)
            if status is not None:
                self._send(status, b'{"error": "INTERNAL: kernel failed"}')
                return
            b = server.behaviour
            if b is Behaviour.GARBAGE:
                self._send(200, b'{"outputs": [[0.1, 0.2,\x00 garbage')
                return
            if b is Behaviour.CLOSES:
                self.send_response(200)
                self.send_header("Content-Length", "4096")
                self.end_headers()
                self.wfile.write(b'{"outputs": [[0.3')
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            rows = len(request["inputs"]["x"])
            if b in (Behaviour.TRICKLE, Behaviour.FLOOD) and rows > SMOKE_ROWS:
                self._dribble(b)
                return
            if b is Behaviour.STRINGS:
                self._send(200, json.dumps({"outputs": [["cat", "dog", "?"]] * rows}).encode())
                return
            if b in _MALFORMED_JSON:
                self._send(200, _MALFORMED_JSON[b](len(request["inputs"]["x"])))
                return
            outputs = server.outputs(np.asarray(request["inputs"]["x"], dtype=np.float32), n)
            if outputs is None:
                return
            # json.dumps writes NaN as the bare token NaN, as TF Serving does
            self._send(200, json.dumps({"outputs": outputs["probs"].tolist()}).encode())

    return Handler


_MALFORMED_JSON = {  # a batch's row count -> the answer
    Behaviour.NO_ROWS: lambda rows: b'{"outputs": []}',
    Behaviour.RAGGED: lambda rows: json.dumps(
        {"outputs": [[0.2, 0.8]] + [[0.1] * 3] * rows}
    ).encode(),
    Behaviour.MIXED_KEYS: lambda rows: json.dumps(
        {"predictions": [{"probs": [1.0, 0.0, 0.0]}] + [{"scores": [0.5]}] * rows}
    ).encode(),
    Behaviour.DEEP: lambda rows: b'{"outputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


def _malformed_tensor(b: Behaviour, rows: int, tensor: Any) -> None:
    """gRPC answers whose ``probs`` TensorProto is no tensor of its own shape and dtype."""
    tensor.dtype = DTYPE_ENUM["float32"]
    width = N_CLASSES if b is not Behaviour.DEEP else -3
    for size in (0 if b is Behaviour.NO_ROWS else rows, width):
        tensor.tensor_shape.dim.add().size = size
    if b is Behaviour.RAGGED:
        tensor.tensor_content = b"\x00" * (rows * N_CLASSES * 4 - 2)  # not whole float32s
    elif b is Behaviour.DEEP:
        tensor.float_val.extend([0.5] * rows * N_CLASSES)


def _signature_proto(input_name: str = "x") -> Any:
    defs = apis.SignatureDefMap()
    sig = defs.signature_def["serving_default"]
    pairs = ((sig.inputs, input_name, N_FEATURES), (sig.outputs, "probs", N_CLASSES))
    for target, name, width in pairs:
        info = target[name]
        info.name = f"{name}:0"
        info.dtype = DTYPE_ENUM["float32"]
        for size in (-1, width):
            info.tensor_shape.dim.add().size = size
    sig.method_name = "tensorflow/serving/predict"
    return defs


_CODES = {500: grpc.StatusCode.INTERNAL, 503: grpc.StatusCode.UNAVAILABLE}


def _grpc_handler(server: FakeServer) -> grpc.GenericRpcHandler:
    def metadata(raw: bytes, context: grpc.ServicerContext) -> bytes:
        n = server.seen.count("metadata")
        status = server.failure("metadata", n)
        if status is not None:
            context.abort(_CODES[status], "model server unavailable")
        response = apis.GetModelMetadataResponse()
        response.model_spec.name = MODEL
        response.model_spec.version.value = VERSION
        response.metadata["signature_def"].Pack(_signature_proto(server.input_name))
        return bytes(response.SerializeToString())

    def predict(raw: bytes, context: grpc.ServicerContext) -> bytes:
        request = apis.PredictRequest.FromString(raw)
        n = server.seen.count("predict")
        status = server.failure("predict", n, raw)
        if status is not None:
            context.abort(_CODES[status], "INTERNAL: kernel failed")
        b = server.behaviour
        x = unpack(request.inputs["x"])
        if b is Behaviour.GARBAGE:
            return b"\xff\xfe\x00 this is no PredictResponse \x00\x07"
        if b is Behaviour.CLOSES:
            server.cut.set()  # the proxy in front forwards half of what comes next, then closes
        response = apis.PredictResponse()
        response.model_spec.name = MODEL
        if b is Behaviour.STRINGS:
            pack(
                np.array([[b"cat", b"dog", b"?"]] * len(x), dtype=object), response.outputs["probs"]
            )
            return bytes(response.SerializeToString())
        if b in (Behaviour.NO_ROWS, Behaviour.RAGGED, Behaviour.DEEP):
            _malformed_tensor(b, len(x), response.outputs["probs"])
            return bytes(response.SerializeToString())
        outputs = server.outputs(np.asarray(x, dtype=np.float32), n)
        if outputs is None:
            context.abort(grpc.StatusCode.CANCELLED, "released at shutdown")
        assert outputs is not None
        for name, value in outputs.items():
            pack(value, response.outputs[name], content=False)
        return bytes(response.SerializeToString())

    methods = {
        "Predict": grpc.unary_unary_rpc_method_handler(predict),
        "GetModelMetadata": grpc.unary_unary_rpc_method_handler(metadata),
    }
    return grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", methods)


@contextmanager
def serving(behaviour: Behaviour, protocol: str) -> Iterator[FakeServer]:
    """A fake server on a free 127.0.0.1 port; ``port`` is set; stopped (and any hung
    request released) on exit."""
    fake = FakeServer(behaviour)
    if protocol == "rest":
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
        httpd.daemon_threads = True
        fake.port = int(httpd.server_address[1])
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield fake
        finally:
            fake.release.set()
            httpd.shutdown()
            httpd.server_close()
        return
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((_grpc_handler(fake),))
    fake.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    proxy = CuttingProxy(fake.port, fake.cut) if behaviour is Behaviour.CLOSES else None
    if proxy is not None:
        fake.port = proxy.port
    try:
        yield fake
    finally:
        fake.release.set()
        if proxy is not None:
            proxy.close()
        server.stop(grace=None)


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 in front of a gRPC server: when ``cut`` is set (the server is
    about to answer a Predict), it forwards half of the next bytes the server sends and closes
    both connections (grpcio gives a server no way to stop halfway through a message)."""

    def __init__(self, upstream: int, cut: threading.Event) -> None:
        self.upstream, self.cut = upstream, cut
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            upstream.settimeout(None)
            for src, dst, cutting in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(src, dst, cutting), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, cutting: bool) -> None:
        try:
            while data := src.recv(65536):
                if cutting and self.cut.is_set():
                    self.cut.clear()
                    dst.sendall(data[: max(1, len(data) // 2)])
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def url(fake: FakeServer, protocol: str) -> str:
    scheme = "http" if protocol == "rest" else "grpc"
    return f"{scheme}://127.0.0.1:{fake.port}/v1/models/{MODEL}/versions/{VERSION}"


def golden_arrays(n: int = 400) -> Mapping[str, np.ndarray]:
    """Inputs and labels the healthy model gets right (so a healthy pair promotes)."""
    x = np.random.default_rng(7).normal(size=(n, N_FEATURES)).astype(np.float32)
    return {"x": x, "labels": good_fn({"x": x})["probs"].argmax(axis=1).astype(np.int64)}


# --- the suite -------------------------------------------------------------------------------

DEADLINE_S = 30.0  # hard limit per gate run: a run still going then is a hang (the test fails)
SMOKE_TIMEOUT = "3s"  # spec.smoke.timeout: the slow and the hung server must end within it
PER_CALL_S = 60.0  # --timeout-s: above the slow server's 30 s, so only smoke.timeout helps
runner = CliRunner()


@dataclass(frozen=True)
class Gated:
    code: int
    stdout: str
    stderr: str

    @property
    def decision(self) -> str | None:
        if self.code not in (0, 1):
            return None
        return str(json.loads(self.stdout)["decision"])

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The golden set (.npz) and the contract file (a ModelDeployment) for every run."""
    root = tmp_path_factory.mktemp("broken")
    golden = root / "golden.npz"
    np.savez(golden, **golden_arrays())
    contract = root / "md.yaml"
    spec = {
        "contract": make_contract().model_dump(mode="json", by_alias=True, exclude_none=True),
        "smoke": {"batchSize": SMOKE_ROWS, "timeout": SMOKE_TIMEOUT},
    }
    contract.write_text(yaml.safe_dump({"spec": spec}))
    return golden, contract


def gate(
    stable: str,
    candidate: str,
    files: tuple[Path, Path],
    per_call_s: float = PER_CALL_S,
    extra: Sequence[str] = (),
) -> Gated:
    """``tensorgate gate --json`` in-process, in a thread that must end within DEADLINE_S."""
    golden, contract = files
    args = [
        "gate", "--stable", stable, "--candidate", candidate, "--golden", str(golden),
        "--contract", str(contract), "--model-name", MODEL, "--timeout-s", str(per_call_s),
        "--json", *extra,
    ]  # fmt: skip
    result: list[Any] = []
    worker = threading.Thread(
        target=lambda: result.append(runner.invoke(app, args)), daemon=True, name="gate"
    )
    worker.start()
    worker.join(DEADLINE_S)
    assert not worker.is_alive(), f"the gate still ran after {DEADLINE_S}s (a hang)"
    outcome = result[0]
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit), repr(
        outcome.exception
    )
    return Gated(outcome.exit_code, outcome.stdout, outcome.stderr)


# (behaviour, protocol): the exit code and a part of the reason every run must give.
EXPECTED: dict[tuple[Behaviour, str], tuple[int, str]] = {
    (Behaviour.GARBAGE, "rest"): (2, "answer is not JSON"),
    (Behaviour.GARBAGE, "grpc"): (2, "the answer is not a Predict response"),
    (Behaviour.ALWAYS_5XX, "rest"): (2, "HTTP 503"),
    (Behaviour.ALWAYS_5XX, "grpc"): (2, "UNAVAILABLE"),
    (Behaviour.SOMETIMES_5XX, "rest"): (1, "predict with a batch of 4 failed: REST POST"),
    (Behaviour.SOMETIMES_5XX, "grpc"): (1, "predict with a batch of 4 failed: gRPC Predict"),
    (Behaviour.WRONG_SHAPE, "rest"): (1, "expected shape [1, 3], got [1, 2]"),
    (Behaviour.WRONG_SHAPE, "grpc"): (1, "expected shape [1, 3], got [1, 2]"),
    (Behaviour.HANGS, "rest"): (1, f"smoke.timeout {SMOKE_TIMEOUT}"),
    (Behaviour.HANGS, "grpc"): (1, f"smoke.timeout {SMOKE_TIMEOUT}"),
    (Behaviour.SLOW, "rest"): (1, f"smoke.timeout {SMOKE_TIMEOUT}"),
    (Behaviour.SLOW, "grpc"): (1, f"smoke.timeout {SMOKE_TIMEOUT}"),
    (Behaviour.CLOSES, "rest"): (2, "RemoteProtocolError"),
    (Behaviour.CLOSES, "grpc"): (2, "UNAVAILABLE"),
    (Behaviour.NAN, "rest"): (1, "non-finite values"),
    (Behaviour.NAN, "grpc"): (1, "non-finite values"),
    (Behaviour.DIFFERS, "rest"): (1, "accuracy drop upper bound"),
    (Behaviour.DIFFERS, "grpc"): (1, "accuracy drop upper bound"),
    (Behaviour.STRINGS, "rest"): (1, "expected dtype float32, got values that are not numbers"),
    (Behaviour.STRINGS, "grpc"): (1, "expected dtype float32, got values that are not numbers"),
    (Behaviour.NO_ROWS, "rest"): (1, "expected shape [1, 3], got [0]"),
    (Behaviour.NO_ROWS, "grpc"): (1, "expected shape [1, 3], got [0, 3]"),
    (Behaviour.RAGGED, "rest"): (1, "predict answer is not a tensor of the outputs"),
    (Behaviour.RAGGED, "grpc"): (1, "predict answer is not a tensor of the outputs"),
    (Behaviour.MIXED_KEYS, "rest"): (1, "predict answer is not a tensor of the outputs"),
    (Behaviour.DEEP, "rest"): (2, "answer is not JSON"),
    (Behaviour.DEEP, "grpc"): (1, "predict answer is not a tensor of the outputs"),
}


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_healthy_candidate_promotes(protocol: str, files: tuple[Path, Path]) -> None:
    """The harness can promote: every "never promote" below is the broken server's doing."""
    with serving(Behaviour.HEALTHY, protocol) as stable, serving(Behaviour.HEALTHY, protocol) as c:
        result = gate(url(stable, protocol), url(c, protocol), files)
    assert (result.code, result.decision) == (0, "promote"), result.text


@pytest.mark.parametrize(
    ("behaviour", "protocol"), list(EXPECTED), ids=[f"{b}-{p}" for b, p in EXPECTED]
)
def test_broken_candidate_is_never_promoted(
    behaviour: Behaviour, protocol: str, files: tuple[Path, Path]
) -> None:
    """Each broken server ends the gate within the deadline with rollback (exit 1: a failed
    check) or "cannot run the gate" (exit 2, which the operator retries as an edge error),
    naming what went wrong; never a promotion, never a traceback."""
    code, reason = EXPECTED[behaviour, protocol]
    with serving(Behaviour.HEALTHY, protocol) as stable, serving(behaviour, protocol) as broken:
        result = gate(url(stable, protocol), url(broken, protocol), files)
    assert result.decision != "promote", result.text
    assert result.code == code, result.text
    assert reason in result.text, result.text
    if code == 2:
        assert "cannot run the gate" in result.stderr, result.stderr


@pytest.mark.parametrize("behaviour", [Behaviour.TRICKLE, Behaviour.FLOOD])
def test_an_answer_that_never_ends_is_cut_at_the_call_timeout(
    behaviour: Behaviour, files: tuple[Path, Path]
) -> None:
    """A REST answer trickling a byte every 0.5 s, or flooding ~2 MB/s without end, while the
    golden set is scored: each attempt is cut at ``--timeout-s`` (one deadline for the whole
    exchange; httpx's own timeout is per read, which a trickle never reaches), retried a
    bounded number of times, and the gate cannot run (exit 2). Before, the gate ran until the
    server quit (seen: 271 s, 598 MB)."""
    with serving(Behaviour.HEALTHY, "rest") as stable, serving(behaviour, "rest") as broken:
        result = gate(url(stable, "rest"), url(broken, "rest"), files, per_call_s=2.0)
    assert result.decision != "promote", result.text
    assert result.code == 2, result.text
    assert "timed out after 2.0s" in result.text, result.text


async def test_a_rest_answer_over_max_message_bytes_is_refused() -> None:
    """The flooding server against a client whose ``max_message_bytes`` is 1 MiB: the answer
    is refused once it passes the limit (as gRPC refuses a message over its limit), a clear
    error, long before the call's timeout."""
    with serving(Behaviour.FLOOD, "rest") as broken:
        client = RestModelClient(
            f"http://127.0.0.1:{broken.port}",
            MODEL,
            version=VERSION,
            options=ClientOptions(timeout_s=20.0, retries=0, max_message_bytes=1 << 20),
        )
        try:
            x = np.zeros((8, N_FEATURES), dtype=np.float32)
            with pytest.raises(ServingError, match="over 1048576 bytes"):
                await asyncio.wait_for(client.predict({"x": x}), timeout=15)
        finally:
            await client.aclose()


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_transient_503s_are_retried_a_bounded_number_of_times(
    protocol: str, files: tuple[Path, Path]
) -> None:
    """Every 2nd predict answers 503 / UNAVAILABLE (TF Serving's overload answers,
    ``model_servers/http_server.cc``), the others are right: each 503 is retried and the gate
    reaches the verdict a healthy server gets; the always-503 server above gives up."""
    with (
        serving(Behaviour.HEALTHY, protocol) as stable,
        serving(Behaviour.FLAKY_503, protocol) as c,
    ):
        result = gate(url(stable, protocol), url(c, protocol), files)
        seen = c.seen
    assert seen.failed >= 5 and seen.predict >= 2 * seen.failed, seen  # each retried once
    assert (result.code, result.decision) == (0, "promote"), result.text


# --- the same servers through the operator's path ------------------------------------------


class JumpClock:
    """Wall time (the checks' deadlines are real) plus the waits the engine asks for."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class ServedTracks(FakePlatform):
    """The fake platform, with each track's endpoint a real (fake) server on loopback."""

    rest: dict[str, int] = field(default_factory=dict)
    grpc: dict[str, int] = field(default_factory=dict)

    async def endpoints(self, body: Body, track: str) -> list[str]:
        return [f"127.0.0.1:{self.rest[track]}"] if track in self.tracks else []

    def grpc_target(self, name: str, track: str) -> str:
        return f"127.0.0.1:{self.grpc[track]}"


def md_body(version: str, protocol: str, status: dict[str, Any]) -> dict[str, Any]:
    spec = {
        "model": {"name": MODEL, "version": version, "uri": "gs://models/m"},
        "serving": {"replicas": 2, "gateProtocol": protocol},
        "contract": make_contract().model_dump(mode="json", by_alias=True, exclude_none=True),
        "goldenSet": {"uri": "/golden/m.npz"},
        "smoke": {"batchSize": SMOKE_ROWS, "timeout": SMOKE_TIMEOUT},
        "analysis": {"steps": [50, 100], "interval": "10s", "maxEdgeErrors": 2},
    }
    meta = {"name": MODEL, "namespace": "ml", "generation": int(version)}
    return {"metadata": meta, "spec": spec, "status": status}


async def roll_out(
    reconciler: Reconciler, clock: JumpClock, version: str, protocol: str, status: dict[str, Any]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """Reconcile until the rollout of ``version`` ends; every phase it passed, in order, and
    the Events (``reason: message``)."""
    phases: list[str] = []
    events: list[str] = []
    for _ in range(60):
        outcome = await reconciler.reconcile(md_body(version, protocol, status))
        status = outcome.status
        events += [f"{e.reason}: {e.message}" for e in outcome.events]
        if not phases or phases[-1] != status.get("phase"):
            phases.append(str(status.get("phase")))
        if status.get("phase") in {"Promoted", "RolledBack", "Failed"} and status.get(
            "observedGeneration"
        ) == int(version):
            return status, phases, events
        clock.advance(outcome.requeue_s or 1)
    raise AssertionError(f"no end after 60 decisions: {phases} {status.get('message')}")


OPERATOR_CASES = [
    (Behaviour.HANGS, f"smoke.timeout {SMOKE_TIMEOUT}"),
    (Behaviour.SLOW, f"smoke.timeout {SMOKE_TIMEOUT}"),
    (Behaviour.GARBAGE, "could not run (2 in a row)"),
    (Behaviour.ALWAYS_5XX, "could not run (2 in a row)"),
    (Behaviour.CLOSES, "could not run (2 in a row)"),
    (Behaviour.WRONG_SHAPE, "expected shape [1, 3], got [1, 2]"),
    (Behaviour.NAN, "non-finite values"),
    (Behaviour.STRINGS, "got values that are not numbers"),
    (Behaviour.DIFFERS, "accuracy drop upper bound"),
    (Behaviour.RAGGED, "predict answer is not a tensor of the outputs"),
    (Behaviour.NO_ROWS, "expected shape [1, 3], got [0"),
    (Behaviour.RENAMED, "input x renamed to features"),
]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
@pytest.mark.parametrize(
    ("behaviour", "reason"), OPERATOR_CASES, ids=[str(b) for b, _ in OPERATOR_CASES]
)
async def test_operator_rolls_a_broken_canary_back(
    behaviour: Behaviour, reason: str, protocol: str
) -> None:
    """The operator's own path (``reconcile.Reconciler`` -> ``checks.PlatformChecker`` ->
    ``run_smoke`` / ``compare_with`` over ``GrpcModelClient`` or ``RestModelClient``, as
    ``serving.gateProtocol`` says): v1 on a healthy server is promoted, then v2 on a broken
    canary server ends RolledBack with the reason in ``status.message`` and the Events,
    never Promoting; an edge error (no verdict) is retried until ``maxEdgeErrors``."""
    buffer = io.BytesIO()
    np.savez(buffer, **golden_arrays())
    with serving(Behaviour.HEALTHY, protocol) as stable, serving(behaviour, protocol) as canary:
        ports = {"stable": stable.port, "canary": canary.port}
        platform = ServedTracks(golden=buffer.getvalue(), rest=ports, grpc=ports)
        options = ClientOptions(timeout_s=PER_CALL_S, retries=2, backoff_s=0.05)
        checker = PlatformChecker(platform, {}, options)
        clock = JumpClock()
        reconciler = Reconciler(platform, {"replicas": FakeRouter()}, checker, clock)

        async def both() -> tuple[dict[str, Any], list[str], list[str]]:
            first, _, _ = await roll_out(reconciler, clock, "1", protocol, {})
            assert first["phase"] == "Promoted", first.get("message")
            return await roll_out(reconciler, clock, "2", protocol, first)

        status, phases, events = await asyncio.wait_for(both(), timeout=DEADLINE_S * 2)
    assert "Promoting" not in phases and status["phase"] == "RolledBack", (phases, status)
    assert status["stableVersion"] == "1"
    texts = [status.get("message") or "", *((status.get("gate") or {}).get("reasons") or [])]
    texts += [c.get("message") or "" for c in status.get("conditions", [])]
    assert any(reason in t for t in texts), (reason, texts)
    rolled = [e for e in events if "rolled back 2 to 1" in e]
    assert len(rolled) == 1 and reason in rolled[0], events
    if behaviour is Behaviour.RENAMED:  # the contract diff reaches status (it was dropped)
        diff = status["gate"]["contractDiff"]
        assert "input x renamed to features" in json.dumps(diff), diff


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_a_server_slow_on_every_batch_is_stopped_at_the_deadline(
    protocol: str, files: tuple[Path, Path]
) -> None:
    """Every golden-set batch answered right after 0.5 s, under ``--timeout-s 2``: no call
    times out, and 2 x 50 batches of 8 one at a time would hold the run for about 50 s.
    ``--deadline 1.5`` stops the whole run at 1.5 s with exit 2 ("cannot run the gate", as
    the operator retries a check past its deadline), naming the deadline and how to raise it.
    Before, scoring had no overall deadline (the run outlived the harness's 30 s)."""
    deadline_s = 1.5
    extra = ["--deadline", str(deadline_s), "--batch-size", "8", "--concurrency", "1"]
    with (
        serving(Behaviour.SLOW_BATCHES, protocol) as stable,
        serving(Behaviour.SLOW_BATCHES, protocol) as candidate,
    ):
        started = time.monotonic()
        result = gate(url(stable, protocol), url(candidate, protocol), files, 2.0, extra)
        elapsed_s = time.monotonic() - started
        batches_begun = stable.seen.slow + candidate.seen.slow
    assert result.decision != "promote", result.text
    assert result.code == 2, result.text
    assert "cannot run the gate: did not finish within --deadline 1.5s" in result.stderr
    assert "raise --deadline" in result.stderr, result.stderr
    assert "timed out" not in result.text, result.text  # no single call hit --timeout-s
    # The golden set was being scored (not smoke) when the deadline ran out ...
    assert 1 <= batches_begun <= deadline_s / BATCH_DELAY_S + 1, batches_begun
    # ... and the run ended at it: not before, and not batches x timeout later.
    assert deadline_s <= elapsed_s < deadline_s + 3.0, elapsed_s


@pytest.mark.parametrize("deadline", ["0", "-1", "nan"])
def test_a_deadline_that_is_not_positive_is_bad_input(
    deadline: str, files: tuple[Path, Path]
) -> None:
    """``--deadline`` 0, negative or NaN could never let a gate run: exit 2 naming the option,
    before any server is asked."""
    with serving(Behaviour.HEALTHY, "rest") as stable, serving(Behaviour.HEALTHY, "rest") as c:
        result = gate(url(stable, "rest"), url(c, "rest"), files, extra=["--deadline", deadline])
        asked = stable.seen.metadata + c.seen.metadata + stable.seen.predict + c.seen.predict
    assert result.code == 2, result.text
    assert "--deadline must be > 0 seconds" in result.stderr, result.stderr
    assert asked == 0
