"""Gate time on 3,000 golden samples, REST vs gRPC, in one run on the same machine.

Builds a small 10-class model pair (the ``tensorgate demo`` task without training: a stable
and a candidate SavedModel), serves them with the local serving backend and times the whole
gate (smoke checks + golden-set scoring of both models + the paired test) over each protocol.
Writes ``benchmarks/results/gate.json``.

    .venv/bin/python benchmarks/gate_bench.py [--samples 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from tensorgate.api.spec import ContractSpec
from tensorgate.gate.golden import load_golden
from tensorgate.gate.runner import GateConfig, run_gate
from tensorgate.serving.base import ClientOptions, ModelClient

N_FEATURES = 32
N_CLASSES = 10
RESULTS = Path(__file__).parent / "results" / "gate.json"


def _export(path: Path, w: np.ndarray, b: np.ndarray) -> None:
    import keras
    import tensorflow as tf

    hidden = keras.layers.Dense(64, activation="relu")
    hidden.build((None, N_FEATURES))
    head = keras.layers.Dense(N_CLASSES)
    head.build((None, 64))
    rng = np.random.default_rng(0)
    hidden.set_weights([np.eye(N_FEATURES, 64, dtype=np.float32), np.zeros(64, np.float32)])
    head.set_weights([np.vstack([w, rng.normal(0, 0.01, (64 - N_FEATURES, N_CLASSES))]), b])

    class Served(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.hidden, self.head = hidden, head

        @tf.function(input_signature=[tf.TensorSpec([None, N_FEATURES], tf.float32, "features")])  # type: ignore[misc]
        def serve(self, x: Any) -> Any:
            return {"probabilities": tf.nn.softmax(self.head(self.hidden(x)))}

    module = Served()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


async def _gate(protocol: str, server: Any, golden: Any, config: GateConfig) -> float:
    options = ClientOptions(timeout_s=60.0)
    stable: ModelClient
    candidate: ModelClient
    if protocol == "rest":
        from tensorgate.serving.rest import RestModelClient

        stable = RestModelClient(server.rest_url, "bench", version=1, options=options)
        candidate = RestModelClient(server.rest_url, "bench", version=2, options=options)
    else:
        from tensorgate.serving.grpc import GrpcModelClient

        stable = GrpcModelClient(server.grpc_target, "bench", version=1, options=options)
        candidate = GrpcModelClient(server.grpc_target, "bench", version=2, options=options)
    try:
        start = time.perf_counter()
        report = await run_gate(stable, candidate, golden, config)
        elapsed = time.perf_counter() - start
        assert report.canary.ran and report.canary.samples == golden.size
        return elapsed
    finally:
        await stable.aclose()
        await candidate.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from tensorgate.serving.local import LocalModelServer

    rng = np.random.default_rng(42)
    centroids = rng.normal(0, 1, (N_CLASSES, N_FEATURES))
    labels = rng.integers(0, N_CLASSES, args.samples)
    x = (centroids[labels] + rng.normal(0, 1.4, (args.samples, N_FEATURES))).astype(np.float32)
    w = (centroids.T / 1.96).astype(np.float32)
    b = (-(centroids**2).sum(axis=1) / 3.92).astype(np.float32)
    contract = ContractSpec.model_validate(
        {
            "inputs": {"features": {"dtype": "float32", "shape": [-1, N_FEATURES]}},
            "outputs": {
                "probabilities": {
                    "dtype": "float32",
                    "shape": [-1, N_CLASSES],
                    "kind": "probabilities",
                }
            },
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "bench"
        _export(base / "1", w, b)
        _export(base / "2", w + rng.normal(0, 0.02, w.shape).astype(np.float32), b)
        golden_path = Path(tmp) / "golden.npz"
        np.savez(golden_path, features=x, labels=labels)
        golden = load_golden(golden_path, contract)
        config = GateConfig(contract=contract)
        times: dict[str, list[float]] = {"rest": [], "grpc": []}
        with LocalModelServer("bench", base, versions=[1, 2]) as server:
            for _ in range(args.repeats):  # interleaved so both see the same machine state
                for protocol in ("rest", "grpc"):
                    times[protocol].append(asyncio.run(_gate(protocol, server, golden, config)))
    rest, grpc_ = statistics.median(times["rest"]), statistics.median(times["grpc"])
    result = {
        "benchmark": "gate",
        "samples": args.samples,
        "repeats": args.repeats,
        "batchSize": ClientOptions().batch_size,
        "concurrency": ClientOptions().concurrency,
        "restSecondsMedian": round(rest, 4),
        "grpcSecondsMedian": round(grpc_, 4),
        "restOverGrpc": round(rest / grpc_, 2),
        "restSeconds": [round(t, 4) for t in times["rest"]],
        "grpcSeconds": [round(t, 4) for t in times["grpc"]],
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
