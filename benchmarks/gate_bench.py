"""Golden-set scoring of a stable and a candidate model: in-process vs gRPC vs REST.

The gate's heavy part is scoring the golden set with both models. This scores a 20,000 x 784
golden set with a small MLP pair (784 -> 64 relu -> 10 softmax, versions 1 and 2) three ways,
in one run on the same machine:

- in-process: both SavedModels loaded in a worker process of their own, called on the same
  batches (the floor);
- gRPC: ``GrpcModelClient`` (the operator's gate path, the project's own protos, in a process
  set up as ``tensorgate run`` sets itself up: ``keep_freed_memory``) against the
  local serving backend, one process per version (the stable and the canary pod),
  ``predict_batched`` for both models at once, with the operator's gate options
  (``checks.PlatformChecker``: ``GATE_GRPC_OPTIONS``);
- the gRPC floor: the same client, requests and answers against a server that does no
  inference (``--null-server``: it reads the request's shape and answers zeros), i.e. what
  Python gRPC itself costs to move the golden set;
- bare grpcio: the same number of requests of the same byte size (no protobuf, no numpy, no
  project code) sent to that server's echo method with the same requests in flight, answered
  with a few bytes: the transport alone, below which no Python gRPC client can go;
- REST: ``RestModelClient`` the same way (JSON, the REST defaults).

Before that, batch rows x requests in flight per server are swept over a grid (512..8192 x
1, 2, 4; median of ``--grid-repeats``) to show where the operator's choice sits. The CPU
seconds each process spends per gRPC run (client, each server) tell where the time goes;
``cpuFloorOverInProcess`` is the ratio no gRPC gate can beat on the machine: the bare
transport's CPU seconds plus the inference's, over every core, against the in-process time.
Writes ``benchmarks/results/gate.json``.

    .venv/bin/python benchmarks/gate_bench.py [--samples 20000] [--repeats 5] [--rest-repeats 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from tensorgate.serving.base import ClientOptions, ModelClient, predict_batched

BACKEND_READY = "tensorgate-serving ready"  # serving.backend.READY_WORD; importing it here
# would import TensorFlow into the client's process, which in the operator has none
NULL_READY = "null-server ready"
IN_PROCESS_READY = "in-process ready"

N_FEATURES = 784
N_HIDDEN = 64
N_CLASSES = 10
RESULTS = Path(__file__).parent / "results" / "gate.json"
GRID_ROWS = (512, 1024, 2048, 4096, 8192)
GRID_IN_FLIGHT = (1, 2, 4)
REST_BATCH = (256, 4)  # the operator's REST defaults (ClientOptions)


def _export(path: Path, seed: int) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    w1 = tf.constant(rng.normal(0, 0.05, (N_FEATURES, N_HIDDEN)).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.2, (N_HIDDEN, N_CLASSES)).astype(np.float32))

    class Served(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, N_FEATURES], tf.float32, "pixels")])  # type: ignore[misc]
        def serve(self, x: Any) -> Any:
            return {"probabilities": tf.nn.softmax(tf.nn.relu(x @ w1) @ w2)}

    module = Served()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


@dataclass(frozen=True)
class _Server:
    rest_url: str
    grpc_target: str
    pid: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _process(cmd: list[str], ready: str, *, stdin: bool = False) -> Iterator[subprocess.Popen[str]]:
    pipe = subprocess.PIPE if stdin else None
    proc = subprocess.Popen(cmd, stdin=pipe, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(ready):
                break
        else:
            raise RuntimeError(f"{cmd[1:3]} exited with {proc.wait()}")
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _ask(worker: subprocess.Popen[str]) -> float:
    """One timed in-process scoring from the ``--in-process`` worker."""
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write("run\n")
    worker.stdin.flush()
    return float(worker.stdout.readline())


@contextmanager
def _serve(base: Path, version: int) -> Iterator[_Server]:
    """The local serving backend for one version, a process of its own (a track's pod)."""
    rest, grpc_port = _free_port(), _free_port()
    cmd = [sys.executable, "-m", "tensorgate.serving.backend", "--model_name=bench",
           f"--model_base_path={base}", f"--version={version}", "--host=127.0.0.1",
           f"--rest_api_port={rest}", f"--port={grpc_port}"]  # fmt: skip
    with _process(cmd, BACKEND_READY) as proc:
        yield _Server(f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}", proc.pid)


@contextmanager
def _serve_null() -> Iterator[_Server]:
    """A gRPC server that answers every Predict with zeros of the right shape, no model."""
    port = _free_port()
    with _process([sys.executable, __file__, "--null-server", str(port)], NULL_READY) as proc:
        yield _Server("", f"127.0.0.1:{port}", proc.pid)


def _null_server(port: int) -> None:
    """``--null-server``: PredictionService/Predict without inference (no TensorFlow): the
    request is split as the serving backend splits it and answered in typed ``float_val``
    as the backend answers, so only the model call is missing."""
    from concurrent import futures

    import grpc

    from tensorgate.serving.protos import serving_apis_pb2 as apis
    from tensorgate.serving.protos import tf_core_pb2
    from tensorgate.serving.tensors import pack, split_predict_request

    def predict(raw: bytes, _context: object) -> bytes:
        _, tensors = split_predict_request(raw)
        header, _content = next(iter(tensors.values()))
        rows = tf_core_pb2.TensorProto.FromString(header).tensor_shape.dim[0].size
        response = apis.PredictResponse()
        zeros = np.zeros((rows, N_CLASSES), np.float32)
        pack(zeros, response.outputs["probabilities"], content=False)
        return bytes(response.SerializeToString())

    limit = 256 * 1024 * 1024
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
        ],
    )
    methods = {
        "Predict": grpc.unary_unary_rpc_method_handler(predict),
        _BARE_METHOD: grpc.unary_unary_rpc_method_handler(lambda raw, _context: raw[:8]),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", methods),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(NULL_READY, flush=True)
    server.wait_for_termination()


_BARE_METHOD = "Bare"
_BARE_PATH = f"/tensorflow.serving.PredictionService/{_BARE_METHOD}"


async def _bare(servers: list[_Server], request_bytes: int, requests: int, in_flight: int) -> float:
    """Bare grpcio: ``requests`` opaque payloads of ``request_bytes`` to each server at once."""
    import grpc

    limit = [("grpc.max_send_message_length", 256 * 1024 * 1024)]
    channels = [grpc.aio.insecure_channel(s.grpc_target, options=limit) for s in servers]
    payload = os.urandom(request_bytes)
    try:
        methods = [c.unary_unary(_BARE_PATH) for c in channels]
        for m in methods:  # connect outside the timing
            await m(b"x")

        async def one(method: Any) -> None:
            slots = asyncio.Semaphore(in_flight)

            async def call() -> None:
                async with slots:
                    await method(payload, timeout=120.0)

            await asyncio.gather(*(call() for _ in range(requests)))

        start = time.perf_counter()
        await asyncio.gather(*(one(m) for m in methods))
        return time.perf_counter() - start
    finally:
        for c in channels:
            await c.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _golden(samples: int) -> np.ndarray:
    return np.random.default_rng(42).random((samples, N_FEATURES), dtype=np.float32)


def _in_process_worker(base: Path, rows: int, samples: int) -> None:
    """``--in-process``: export both models, then time one scoring per line read from
    stdin. A process of its own: TensorFlow's threads (they spin a while after each run)
    stay out of the gRPC client, which in the operator imports no TensorFlow."""
    import tensorflow as tf

    _export(base / "1", 1)
    _export(base / "2", 2)
    fns = [tf.saved_model.load(str(base / v)).signatures["serving_default"] for v in ("1", "2")]
    x = _golden(samples)

    def run() -> float:
        start = time.perf_counter()
        for s in range(0, len(x), rows):
            chunk = tf.constant(x[s : s + rows])
            for fn in fns:
                fn(pixels=chunk)["probabilities"].numpy()
        return time.perf_counter() - start

    run()  # warm up
    print(IN_PROCESS_READY, flush=True)
    for _ in sys.stdin:
        print(run(), flush=True)


async def _score(
    protocol: str, servers: list[_Server], x: np.ndarray, options: ClientOptions
) -> float:
    clients: list[ModelClient]
    if protocol == "rest":
        from tensorgate.serving.rest import RestModelClient

        clients = [
            RestModelClient(s.rest_url, "bench", version=v, options=options)
            for v, s in zip((1, 2), servers, strict=True)
        ]
    else:
        from tensorgate.serving.grpc import GrpcModelClient

        clients = [
            GrpcModelClient(s.grpc_target, "bench", version=v, options=options)
            for v, s in zip((1, 2), servers, strict=True)
        ]
    try:
        for c in clients:  # connect outside the timing
            await c.predict({"pixels": x[:1]})
        start = time.perf_counter()
        outs = await asyncio.gather(*(predict_batched(c, {"pixels": x}) for c in clients))
        elapsed = time.perf_counter() - start
        assert all(o["probabilities"].shape == (len(x), N_CLASSES) for o in outs)
        return elapsed
    finally:
        for c in clients:
            await c.aclose()


def _options(rows: int, in_flight: int) -> ClientOptions:
    return ClientOptions(timeout_s=120.0, batch_size=rows, concurrency=in_flight)


def _timed_grpc(
    servers: list[_Server], x: np.ndarray, options: ClientOptions
) -> tuple[float, list[float]]:
    """One gRPC run: seconds, and CPU seconds of this process (the client) and each server."""
    pids = [os.getpid()] + [s.pid for s in servers]
    before = [_cpu_seconds(p) for p in pids]
    elapsed = asyncio.run(_score("grpc", servers, x, options))
    return elapsed, [_cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grid-repeats", type=int, default=3)
    parser.add_argument("--rest-repeats", type=int, default=1)
    parser.add_argument("--null-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--in-process", nargs=2, metavar=("BASE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.null_server:
        _null_server(args.null_server)
        return
    if args.in_process:
        _in_process_worker(Path(args.in_process[0]), int(args.in_process[1]), args.samples)
        return

    from tensorgate.checks import GATE_GRPC_OPTIONS
    from tensorgate.serving.tensors import keep_freed_memory

    keep_freed_memory()  # this process is the operator's gate client: as `tensorgate run` does

    x = _golden(args.samples)
    gate = GATE_GRPC_OPTIONS
    rows = gate.rows_per_request({"pixels": x})
    keys = ("inProcess", "grpc", "grpcNoInference", "grpcBare", "rest")
    requests = -(-len(x) // rows)  # per model
    request_bytes = rows * N_FEATURES * x.itemsize
    times: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[list[float]]] = {
        "inProcess": [],
        "grpc": [],
        "grpcNoInference": [],
        "grpcBare": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "bench"
        worker = [
            sys.executable,
            __file__,
            f"--samples={args.samples}",
            "--in-process",
            str(base),
            str(rows),
        ]
        with (
            _process(worker, IN_PROCESS_READY, stdin=True) as local,
            _serve(base, 1) as stable,
            _serve(base, 2) as candidate,
            _serve_null() as n1,
            _serve_null() as n2,
        ):
            server, null = [stable, candidate], [n1, n2]
            grid = {
                f"{b}x{c}": _median(
                    [_timed_grpc(server, x, _options(b, c))[0] for _ in range(args.grid_repeats)]
                )
                for b in GRID_ROWS
                for c in GRID_IN_FLIGHT
            }
            for i in range(args.repeats):  # interleaved: all see the same machine state
                before = _cpu_seconds(local.pid)
                times["inProcess"].append(_ask(local))
                cpu["inProcess"].append([_cpu_seconds(local.pid) - before])
                for key, targets in (("grpc", server), ("grpcNoInference", null)):
                    elapsed, seconds = _timed_grpc(targets, x, gate)
                    times[key].append(elapsed)
                    cpu[key].append(seconds)
                pids = [os.getpid()] + [s.pid for s in null]
                before_bare = [_cpu_seconds(p) for p in pids]
                times["grpcBare"].append(
                    asyncio.run(_bare(null, request_bytes, requests, gate.concurrency))
                )
                cpu["grpcBare"].append(
                    [_cpu_seconds(p) - b for p, b in zip(pids, before_bare, strict=True)]
                )
                if i < args.rest_repeats:
                    rest = ClientOptions(
                        timeout_s=120.0, batch_size=REST_BATCH[0], concurrency=REST_BATCH[1]
                    )
                    times["rest"].append(asyncio.run(_score("rest", server, x, rest)))
    med = {k: _median(v) for k, v in times.items() if v}
    cpu_med = {
        k: dict(
            zip(
                ("both models",) if k == "inProcess" else ("client", "stable", "candidate"),
                (_median(list(c)) for c in zip(*v, strict=True)),
                strict=True,
            )
        )
        for k, v in cpu.items()
    }
    result = {
        "benchmark": "gate-golden-scoring",
        "samples": args.samples,
        "features": N_FEATURES,
        "model": f"MLP {N_FEATURES}-{N_HIDDEN}-{N_CLASSES}, stable + candidate",
        "repeats": args.repeats,
        "grpcGridSeconds": grid,
        "grpcGridBest": min(grid, key=lambda k: grid[k]),
        "gateGrpcRowsPerRequest": rows,
        "gateGrpcBatchBytes": gate.batch_bytes,
        "gateGrpcInFlightPerServer": gate.concurrency,
        "restBatchSize": REST_BATCH[0],
        "restConcurrency": REST_BATCH[1],
        "inProcessSecondsMedian": med["inProcess"],
        "grpcSecondsMedian": med["grpc"],
        "grpcNoInferenceSecondsMedian": med["grpcNoInference"],
        "grpcBareSecondsMedian": med["grpcBare"],
        "restSecondsMedian": med.get("rest"),
        "grpcOverInProcess": round(med["grpc"] / med["inProcess"], 2),
        "grpcNoInferenceOverInProcess": round(med["grpcNoInference"] / med["inProcess"], 2),
        "grpcBareOverInProcess": round(med["grpcBare"] / med["inProcess"], 2),
        # No gRPC gate can beat this on this machine: the bare transport's CPU seconds plus
        # the inference's, spread over every core, against the in-process wall time.
        "cpuFloorOverInProcess": round(
            (sum(cpu_med["grpcBare"].values()) + cpu_med["inProcess"]["both models"])
            / (os.cpu_count() or 1)
            / med["inProcess"],
            2,
        ),
        "restOverInProcess": round(med["rest"] / med["inProcess"], 2) if "rest" in med else None,
        "cpuSecondsPerRunMedian": cpu_med,
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "machine": {
            "cpus": os.cpu_count(),
            "loadAverage": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
