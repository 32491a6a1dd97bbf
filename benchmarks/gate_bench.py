"""Golden-set scoring of a stable and a candidate model: in-process vs gRPC vs REST.

The gate's heavy part is scoring the golden set with both models. This scores a 20,000 x 784
golden set with a small MLP pair (784 -> 64 relu -> 10 softmax, versions 1 and 2) three ways,
in one run on the same machine:

- in-process: both SavedModels loaded here, called on the same batches (the floor);
- gRPC: ``GrpcModelClient`` (the operator's gate path, the project's own protos) against the
  local serving backend, one process per version (the stable and the canary pod),
  ``predict_batched`` for both models at once;
- REST: ``RestModelClient`` the same way (JSON).

gRPC batch size and concurrency are tuned over a small grid first; the best pair is recorded
and used. Writes ``benchmarks/results/gate.json``.

    .venv/bin/python benchmarks/gate_bench.py [--samples 20000] [--repeats 3] [--rest-repeats 1]
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from tensorgate.serving.base import ClientOptions, ModelClient, predict_batched

N_FEATURES = 784
N_HIDDEN = 64
N_CLASSES = 10
RESULTS = Path(__file__).parent / "results" / "gate.json"
GRID = [(512, 2), (1024, 2), (2048, 2), (2048, 4), (4096, 2)]
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(base: Path, version: int) -> Iterator[_Server]:
    """The local serving backend for one version, a process of its own (a track's pod)."""
    from tensorgate.serving.backend import READY_WORD

    rest, grpc_port = _free_port(), _free_port()
    cmd = [sys.executable, "-m", "tensorgate.serving.backend", "--model_name=bench",
           f"--model_base_path={base}", f"--version={version}", "--host=127.0.0.1",
           f"--rest_api_port={rest}", f"--port={grpc_port}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(READY_WORD):
                break
        else:
            raise RuntimeError(f"serving backend exited with {proc.wait()}")
        yield _Server(f"http://127.0.0.1:{rest}", f"127.0.0.1:{grpc_port}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _in_process(base: Path, x: np.ndarray, batch: int) -> Callable[[], float]:
    import tensorflow as tf

    fns = [tf.saved_model.load(str(base / v)).signatures["serving_default"] for v in ("1", "2")]

    def run() -> float:
        start = time.perf_counter()
        for s in range(0, len(x), batch):
            chunk = tf.constant(x[s : s + batch])
            for fn in fns:
                fn(pixels=chunk)["probabilities"].numpy()
        return time.perf_counter() - start

    return run


async def _score(
    protocol: str, servers: list[_Server], x: np.ndarray, batch: int, conc: int
) -> float:
    options = ClientOptions(timeout_s=120.0, batch_size=batch, concurrency=conc)
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
        for c in clients:  # connect and learn the signature outside the timing
            await c.metadata()
        start = time.perf_counter()
        outs = await asyncio.gather(*(predict_batched(c, {"pixels": x}) for c in clients))
        elapsed = time.perf_counter() - start
        assert all(o["probabilities"].shape == (len(x), N_CLASSES) for o in outs)
        return elapsed
    finally:
        for c in clients:
            await c.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rest-repeats", type=int, default=1)
    args = parser.parse_args()

    x = np.random.default_rng(42).random((args.samples, N_FEATURES), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "bench"
        _export(base / "1", 1)
        _export(base / "2", 2)
        with _serve(base, 1) as stable, _serve(base, 2) as candidate:
            server = [stable, candidate]
            grid = {f"{b}x{c}": asyncio.run(_score("grpc", server, x, b, c)) for b, c in GRID}
            best = min(grid, key=lambda k: grid[k])
            batch, conc = (int(p) for p in best.split("x"))
            local = _in_process(base, x, batch)
            local()  # warm up
            times: dict[str, list[float]] = {"inProcess": [], "grpc": [], "rest": []}
            for i in range(args.repeats):  # interleaved: both see the same machine state
                times["inProcess"].append(local())
                times["grpc"].append(asyncio.run(_score("grpc", server, x, batch, conc)))
                if i < args.rest_repeats:
                    times["rest"].append(asyncio.run(_score("rest", server, x, *REST_BATCH)))
    med = {k: statistics.median(v) for k, v in times.items() if v}
    result = {
        "benchmark": "gate-golden-scoring",
        "samples": args.samples,
        "features": N_FEATURES,
        "model": f"MLP {N_FEATURES}-{N_HIDDEN}-{N_CLASSES}, stable + candidate",
        "repeats": args.repeats,
        "grpcGridSeconds": {k: round(v, 4) for k, v in grid.items()},
        "chosenBatchSize": batch,
        "chosenConcurrency": conc,
        "restBatchSize": REST_BATCH[0],
        "restConcurrency": REST_BATCH[1],
        "inProcessSecondsMedian": round(med["inProcess"], 4),
        "grpcSecondsMedian": round(med["grpc"], 4),
        "restSecondsMedian": round(med["rest"], 4),
        "grpcOverInProcess": round(med["grpc"] / med["inProcess"], 2),
        "restOverInProcess": round(med["rest"] / med["inProcess"], 2),
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
