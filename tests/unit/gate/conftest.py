"""Builders for the gate's unit tests: a contract, a golden set, fake models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from tensorgate.api.spec import ContractSpec
from tensorgate.gate.golden import GoldenSet
from tensorgate.serving.base import TensorInfo
from tensorgate.serving.fake import FakeModelClient

N_FEATURES = 4
N_CLASSES = 3


def make_contract(**outputs: Any) -> ContractSpec:
    return ContractSpec.model_validate(
        {
            "inputs": {"x": {"dtype": "float32", "shape": [-1, N_FEATURES]}},
            "outputs": outputs
            or {"probs": {"dtype": "float32", "shape": [-1, N_CLASSES], "kind": "probabilities"}},
        }
    )


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


WEIGHTS = np.random.default_rng(1).normal(size=(N_FEATURES, N_CLASSES)).astype(np.float32)


def good_fn(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"probs": softmax(inputs["x"] @ WEIGHTS).astype(np.float32)}


def make_golden(n: int = 300, expected: bool = False) -> GoldenSet:
    x = np.random.default_rng(2).normal(size=(n, N_FEATURES)).astype(np.float32)
    labels = good_fn({"x": x})["probs"].argmax(axis=1)
    flip = np.random.default_rng(3).random(n) < 0.1  # the stable model is 90% right
    labels = np.where(flip, (labels + 1) % N_CLASSES, labels).astype(np.int64)
    exp = {"probs": good_fn({"x": x})["probs"]} if expected else {}
    return GoldenSet(inputs={"x": x}, labels=labels, expected=exp)


FakeFactory = Callable[..., FakeModelClient]


@pytest.fixture
def fake() -> FakeFactory:
    def make(
        fn: Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]] = good_fn,
        *,
        inputs: dict[str, TensorInfo] | None = None,
        outputs: dict[str, TensorInfo] | None = None,
    ) -> FakeModelClient:
        return FakeModelClient(
            fn,
            inputs=inputs or {"x": TensorInfo("float32", (-1, N_FEATURES))},
            outputs=outputs or {"probs": TensorInfo("float32", (-1, N_CLASSES))},
        )

    return make
