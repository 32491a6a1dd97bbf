"""``tensorgate demo``: the story TensorGate exists for, end to end on one machine.

1. A synthetic 10-class task (Gaussian clusters in 32 features; class 0 is a little more
   common, as real label distributions are).
2. The *same* training function trains two Keras models. Its hand-written loss one-hot encodes
   the labels and multiplies them with the predicted log-probabilities. The good run passes
   labels as ``(N,)``. The broken run passes them as ``(N, 1)``, as read from a feature-store
   column: ``one_hot`` gives ``(N, 1, 10)``, which *broadcasts* against ``(N, 10)`` into
   ``(N, N, 10)`` - every prediction is trained towards the batch's average label. No error,
   a loss that goes down, and a model that answers every request with well-formed
   probabilities... that ignore the input.
3. Both are exported as SavedModels (versions 1 and 2 of one model base path), served by the
   local serving backend (TF Serving's REST/gRPC APIs), and gated.

Smoke inference passes (every answer is well-formed); the paired accuracy comparison rolls
the candidate back.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DemoResult", "make_task", "run_demo"]

N_CLASSES = 10
N_FEATURES = 32
INPUT_NAME = "features"
OUTPUT_NAME = "probabilities"


@dataclass(frozen=True)
class DemoResult:
    report: Any  # GateReport (kept untyped to keep this module's imports light)
    stable_train_accuracy: float
    candidate_train_accuracy: float
    timings_s: dict[str, float]


def make_task(
    n: int, seed: int, *, centroid_seed: int = 7, noise: float = 2.8
) -> tuple[np.ndarray, np.ndarray]:
    """Samples of the synthetic task: features ``(n, 32)`` float32, labels ``(n,)`` int64."""
    centroids = np.random.default_rng(centroid_seed).normal(0.0, 1.0, (N_CLASSES, N_FEATURES))
    rng = np.random.default_rng(seed)
    priors = np.array([0.11] + [0.89 / (N_CLASSES - 1)] * (N_CLASSES - 1))
    labels = rng.choice(N_CLASSES, size=n, p=priors)
    features = centroids[labels] + rng.normal(0.0, noise, (n, N_FEATURES)) * 0.5
    return features.astype(np.float32), labels.astype(np.int64)


def _train(features: np.ndarray, labels: np.ndarray, seed: int) -> Any:
    """Train a small softmax classifier. ``labels`` shape decides whether the bug bites."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)

    def loss(y_true: Any, y_pred: Any) -> Any:
        onehot = tf.one_hot(tf.cast(y_true, tf.int32), N_CLASSES)  # (N,10) or, buggy, (N,1,10)
        return -tf.reduce_mean(tf.reduce_sum(onehot * tf.math.log(y_pred + 1e-7), axis=-1))

    model = keras.Sequential(
        [
            keras.Input((N_FEATURES,), name=INPUT_NAME),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(N_CLASSES, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(features, labels, batch_size=128, epochs=6, verbose=0, shuffle=True)
    return model


def _export(model: Any, path: Path) -> None:
    import tensorflow as tf

    class Serving(tf.Module):  # type: ignore[misc]
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        @tf.function(  # type: ignore[untyped-decorator,unused-ignore]
            input_signature=[tf.TensorSpec([None, N_FEATURES], tf.float32, INPUT_NAME)]
        )
        def serve(self, features: Any) -> dict[str, Any]:
            return {OUTPUT_NAME: self.model(features, training=False)}

    module = Serving(model)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    pred = np.asarray(model(x, training=False)).argmax(axis=1)
    return float(np.mean(pred == y))


CONTRACT_YAML = f"""\
signature: serving_default
inputs:
  {INPUT_NAME}: {{dtype: float32, shape: [-1, {N_FEATURES}]}}
outputs:
  {OUTPUT_NAME}: {{dtype: float32, shape: [-1, {N_CLASSES}], kind: probabilities}}
"""


def run_demo(
    workdir: Path | None = None,
    *,
    protocol: str = "grpc",
    golden_samples: int = 3000,
    progress: Any = None,
) -> DemoResult:
    """Train, export, serve and gate; returns the gate report and timings."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import asyncio

    import yaml

    from tensorgate.api.spec import ContractSpec
    from tensorgate.gate.golden import load_golden
    from tensorgate.gate.runner import GateConfig, run_gate
    from tensorgate.serving.backend import LocalModelServer
    from tensorgate.serving.base import ClientOptions, ModelClient

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="tensorgate-demo-"))
    base = root / "models" / "classifier"

    x_train, y_train = make_task(6000, seed=1)
    x_gold, y_gold = make_task(golden_samples, seed=2)
    good = _train(x_train, y_train, seed=3)
    broken = _train(x_train, y_train.reshape(-1, 1), seed=3)  # the (N, 1) labels column
    timings["train"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    _export(good, base / "1")
    _export(broken, base / "2")
    golden_path = root / "golden.npz"
    # The training pipeline's own outputs for the golden inputs (for the parity check).
    expected = np.asarray(broken(x_gold, training=False), dtype=np.float32)
    np.savez(golden_path, features=x_gold, labels=y_gold, expected_probabilities=expected)
    (root / "contract.yaml").write_text(CONTRACT_YAML)
    timings["export"] = time.perf_counter() - t1

    contract = ContractSpec.model_validate(yaml.safe_load(CONTRACT_YAML))
    golden = load_golden(golden_path, contract)
    config = GateConfig(contract=contract)
    t2 = time.perf_counter()
    with LocalModelServer("classifier", base, versions=[1, 2]) as server:
        timings["serve"] = time.perf_counter() - t2

        async def gate() -> Any:
            options = ClientOptions(timeout_s=30.0)
            stable: ModelClient
            candidate: ModelClient
            if protocol == "rest":
                from tensorgate.serving.rest import RestModelClient

                stable = RestModelClient(server.rest_url, "classifier", version=1, options=options)
                candidate = RestModelClient(
                    server.rest_url, "classifier", version=2, options=options
                )
            else:
                from tensorgate.serving.grpc import GrpcModelClient

                stable = GrpcModelClient(
                    server.grpc_target, "classifier", version=1, options=options
                )
                candidate = GrpcModelClient(
                    server.grpc_target, "classifier", version=2, options=options
                )
            try:
                return await run_gate(stable, candidate, golden, config, progress=progress)
            finally:
                await stable.aclose()
                await candidate.aclose()

        t3 = time.perf_counter()
        report = asyncio.run(gate())
        timings["gate"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    return DemoResult(
        report=report,
        stable_train_accuracy=_accuracy(good, x_train, y_train),
        candidate_train_accuracy=_accuracy(broken, x_train, y_train),
        timings_s=timings,
    )
