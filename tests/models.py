"""Tiny seeded SavedModels for the gate tests: one per failure class, built in seconds.

A *family* is a synthetic classification task (Gaussian clusters) with its own input/output
names, sizes and output kind, so that the gate is exercised on models that share nothing but
the contract. Good models are Bayes classifiers for the task, written into a Keras ``Dense``
layer (no training needed: deterministic and instant). Every *variant* is a realistic way a
model goes wrong in serving. Models are exported with ``tf.saved_model.save`` as numeric
versions of one model base path, exactly as TF Serving expects.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class Family:
    name: str
    input_name: str
    output_name: str
    n_features: int
    n_classes: int
    kind: str  # probabilities | logits
    width: int  # output width: n_classes, or 1 for a binary probability
    seed: int
    sigma: float

    def centroids(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.normal(0.0, 1.0, (self.n_classes, self.n_features))

    def samples(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, self.n_classes, n)
        x = self.centroids()[labels] + rng.normal(0.0, self.sigma, (n, self.n_features))
        return x.astype(np.float32), labels.astype(np.int64)

    def bayes_weights(self) -> tuple[np.ndarray, np.ndarray]:
        mu = self.centroids()
        w = (mu.T / self.sigma**2).astype(np.float32)
        b = (-(mu**2).sum(axis=1) / (2 * self.sigma**2)).astype(np.float32)
        if self.width == 1:  # binary: logit of class 1 vs class 0
            return (w[:, 1:2] - w[:, 0:1]), (b[1:2] - b[0:1])
        return w, b

    def contract(self) -> dict[str, Any]:
        return {
            "signature": "serving_default",
            "inputs": {self.input_name: {"dtype": "float32", "shape": [-1, self.n_features]}},
            "outputs": {
                self.output_name: {
                    "dtype": "float32",
                    "shape": [-1, self.width],
                    "kind": self.kind,
                }
            },
        }


# Ten classes, softmax probabilities.
DIGITS = Family("digits", "features", "probabilities", 16, 10, "probabilities", 10, 11, 1.3)
# Three classes, raw logits, other names and sizes.
SHAPES = Family("shapes", "pixels", "scores", 6, 3, "logits", 3, 23, 1.0)
# Binary, one sigmoid probability per sample.
FRAUD = Family("fraud", "txn", "p_fraud", 5, 2, "probabilities", 1, 37, 1.2)


def _activate(family: Family, logits: Any) -> Any:
    import tensorflow as tf

    if family.kind == "logits":
        return logits
    if family.width == 1:
        return tf.sigmoid(logits)
    return tf.nn.softmax(logits)


Body = Callable[[Any, Any, Family], Any]  # (x, dense, family) -> {output: tensor}


def _good(x: Any, dense: Any, family: Family) -> Any:
    return {family.output_name: _activate(family, dense(x))}


def _batch_stats(x: Any, dense: Any, family: Family) -> Any:
    """Standardises with the *batch's* statistics at inference (BatchNorm left in training)."""
    import tensorflow as tf

    mean, var = tf.nn.moments(x, axes=[0], keepdims=True)
    return {family.output_name: _activate(family, dense((x - mean) / tf.sqrt(var + 1.0)))}


def _sigmoid_multiclass(x: Any, dense: Any, family: Family) -> Any:
    import tensorflow as tf

    return {family.output_name: tf.sigmoid(dense(x))}


def _narrow_output(x: Any, dense: Any, family: Family) -> Any:
    """Answers only the top probability; the declared shape is left unknown ([-1, -1])."""
    import tensorflow as tf

    probs = _activate(family, dense(x))
    width = tf.reduce_max(tf.shape(x)) * 0 + 1  # defeats static shape inference
    return {family.output_name: tf.reshape(tf.reduce_max(probs, axis=1), [-1, width])}


def _first_row_only(x: Any, dense: Any, family: Family) -> Any:
    return {family.output_name: _activate(family, dense(x))[:1]}


def _parity_skew(x: Any, dense: Any, family: Family) -> Any:
    """Serving-side preprocessing differs from training: features rescaled by 0.9."""
    return {family.output_name: _activate(family, dense(x * 0.9))}


def _nan_when(threshold: float) -> Body:
    def body(x: Any, dense: Any, family: Family) -> Any:
        import tensorflow as tf

        probs = _activate(family, dense(x))
        bad = x[:, :1] > threshold
        return {family.output_name: tf.where(bad, tf.fill(tf.shape(probs), np.nan), probs)}

    return body


def export(
    path: Path,
    family: Family,
    body: Body = _good,
    *,
    weights: tuple[np.ndarray, np.ndarray] | None = None,
    input_name: str | None = None,
    input_dtype: str = "float32",
) -> Path:
    """Write one SavedModel (signature ``serving_default``) and return its folder."""
    import keras
    import tensorflow as tf

    w, b = weights if weights is not None else family.bayes_weights()
    dense = keras.layers.Dense(w.shape[1], name="classifier")
    dense.build((None, family.n_features))
    dense.set_weights([w, b])
    dtype = tf.as_dtype(input_dtype)
    name = input_name or family.input_name

    class Served(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.dense = dense

        @tf.function(input_signature=[tf.TensorSpec([None, family.n_features], dtype, name)])
        def serve(self, x: Any) -> Any:
            return body(tf.cast(x, tf.float32), self.dense, family)

    module = Served()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def perturbed(family: Family, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bayes weights plus seeded noise: a slightly worse model."""
    w, b = family.bayes_weights()
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, scale * float(np.abs(w).mean()), w.shape).astype(np.float32)
    return w + noise, b


def random_weights(family: Family, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A model that learnt nothing useful: well-formed outputs, chance accuracy."""
    w, b = family.bayes_weights()
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, float(np.abs(w).mean()), w.shape).astype(np.float32), b * 0


# The variants of a family, by version number under its model base path.
VARIANTS = {
    "good": 1,
    "identical": 2,
    "slightly-worse": 3,
    "collapse": 4,
    "renamed-input": 5,
    "wrong-dtype": 6,
    "narrow-output": 7,
    "first-row-only": 8,
    "nan-rare": 9,
    "batch-stats": 10,
    "not-normalised": 11,
    "parity-skew": 12,
}


def build_family(
    base: Path, family: Family, golden_x: np.ndarray, variants: list[str] | None = None
) -> dict[str, int]:
    """Export the family's variants as versions under ``base``; return name -> version."""
    chosen = variants or list(VARIANTS)
    # NaN for the samples whose first feature is in the top 3% (never the first smoke batch).
    threshold = float(max(np.quantile(golden_x[:, 0], 0.97), golden_x[:16, 0].max()) + 1e-3)
    recipes: dict[str, Callable[[Path], Path]] = {
        "good": lambda p: export(p, family),
        "identical": lambda p: export(p, family),
        "slightly-worse": lambda p: export(p, family, weights=perturbed(family, 0.2, 5)),
        "collapse": lambda p: export(p, family, weights=random_weights(family, 6)),
        "renamed-input": lambda p: export(p, family, input_name="inputs"),
        "wrong-dtype": lambda p: export(p, family, input_dtype="float64"),
        "narrow-output": lambda p: export(p, family, _narrow_output),
        "first-row-only": lambda p: export(p, family, _first_row_only),
        "nan-rare": lambda p: export(p, family, _nan_when(threshold)),
        "batch-stats": lambda p: export(p, family, _batch_stats),
        "not-normalised": lambda p: export(p, family, _sigmoid_multiclass),
        "parity-skew": lambda p: export(p, family, _parity_skew),
    }
    versions = {}
    for name in chosen:
        version = VARIANTS[name]
        recipes[name](base / str(version))
        versions[name] = version
    return versions


def bayes_outputs(family: Family, x: np.ndarray) -> np.ndarray:
    """What the good model answers, computed in numpy (the 'training pipeline' outputs)."""
    w, b = family.bayes_weights()
    logits = x.astype(np.float64) @ w.astype(np.float64) + b
    if family.kind == "logits":
        return logits.astype(np.float32)
    if family.width == 1:
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
