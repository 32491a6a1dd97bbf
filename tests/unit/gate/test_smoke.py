"""Smoke checks on fake models: each failure class is caught by the right named check."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np
import pytest

from tensorgate.api.spec import SmokeSpec
from tensorgate.gate.smoke import check_signature, run_smoke, synthetic_inputs
from tensorgate.serving.base import ModelMetadata, Signature, TensorInfo
from tests.unit.gate.conftest import (
    N_CLASSES,
    N_FEATURES,
    FakeFactory,
    good_fn,
    make_contract,
    make_golden,
)


def _meta(inputs: dict[str, TensorInfo], outputs: dict[str, TensorInfo]) -> ModelMetadata:
    return ModelMetadata("m", 1, {"serving_default": Signature("serving_default", inputs, outputs)})


X = TensorInfo("float32", (-1, N_FEATURES))
P = TensorInfo("float32", (-1, N_CLASSES))


@pytest.mark.parametrize(
    ("inputs", "outputs", "passed", "callable_", "fragment"),
    [
        pytest.param({"x": X}, {"probs": P}, True, True, "matches", id="exact-match-passes"),
        pytest.param(
            {"x": TensorInfo("float32", (-1, -1))}, {"probs": TensorInfo("float32", (-1, -1))},
            True, True, "matches", id="served-unknown-dims-deferred-to-shapes",
        ),
        pytest.param(
            {"x": TensorInfo("float32", None)}, {"probs": P}, True, True, "matches",
            id="served-unknown-rank-deferred",
        ),
        pytest.param({"y": X}, {"probs": P}, False, False, "input x: missing", id="renamed-input"),
        pytest.param(
            {"x": X}, {"scores": P}, False, True, "output probs: missing", id="renamed-output",
        ),
        pytest.param(
            {"x": TensorInfo("float64", (-1, N_FEATURES))}, {"probs": P}, False, False,
            "expected dtype float32, got float64", id="input-dtype",
        ),
        pytest.param(
            {"x": TensorInfo("float32", (-1, N_FEATURES, 1))}, {"probs": P}, False, False,
            "expected rank 2", id="input-rank",
        ),
        pytest.param(
            {"x": X}, {"probs": TensorInfo("float32", (-1, 1))}, False, True,
            "output probs: expected shape [-1, 3], got [-1, 1]", id="output-fixed-dim",
        ),
        pytest.param(
            {"x": X, "extra": X}, {"probs": P}, False, False, "undeclared input",
            id="extra-required-input",
        ),
        pytest.param(
            {"x": X}, {"probs": P, "debug": P}, True, True, "matches", id="extra-output-allowed",
        ),
    ],
)  # fmt: skip
def test_check_signature_compares_names_dtypes_ranks_dims(
    inputs: dict[str, TensorInfo],
    outputs: dict[str, TensorInfo],
    passed: bool,
    callable_: bool,
    fragment: str,
) -> None:
    check, can_call = check_signature(_meta(inputs, outputs), make_contract())
    assert check.passed is passed
    assert can_call is callable_
    assert fragment in check.message


def test_check_signature_missing_signature_fails() -> None:
    meta = ModelMetadata("m", 1, {"other": Signature("other", {"x": X}, {"probs": P})})
    check, can_call = check_signature(meta, make_contract())
    assert not check.passed and not can_call
    assert "not served" in check.message


async def _smoke(client: object, **kwargs: object) -> list[tuple[str, bool, str]]:
    result = await run_smoke(
        client,  # type: ignore[arg-type]
        make_contract(),
        SmokeSpec(),
        kwargs.pop("golden", make_golden()),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )
    return [(c.name, c.passed, c.message) for c in result.report.checks]


def _failed(checks: list[tuple[str, bool, str]]) -> list[str]:
    return [name for name, passed, _ in checks if not passed]


async def test_smoke_good_model_passes_every_check(fake: FakeFactory) -> None:
    checks = await _smoke(fake())
    assert _failed(checks) == []
    assert [c[0] for c in checks] == [
        "signature", "batch-1-shape", "batch-n-shape", "finite", "batch-invariance",
        "probabilities",
    ]  # fmt: skip


def _narrow(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"probs": good_fn(inputs)["probs"].max(axis=1, keepdims=True)}


def _first_row(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"probs": good_fn(inputs)["probs"][:1]}


def _batch_stats(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = inputs["x"]
    return good_fn({"x": (x - x.mean(axis=0)) / (x.std(axis=0) + 1.0)})


def _broadcast_bug(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = inputs["x"]
    mean = x.mean(axis=1)  # (N,) against (N, 1): an (N, N) matrix, reduced back to (N, 1)
    shifted = (x[:, :1] - mean).mean(axis=1, keepdims=True)
    return good_fn({"x": x + shifted})


def _sigmoid(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "probs": (1 / (1 + np.exp(-(inputs["x"] @ np.ones((N_FEATURES, N_CLASSES)))))).astype(
            np.float32
        )
    }


def _nan_rare(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = good_fn(inputs)["probs"].copy()
    out[inputs["x"][:, 0] > 2.2] = np.nan
    return {"probs": out}


def _nan_always(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"probs": np.full((inputs["x"].shape[0], N_CLASSES), np.inf, np.float32)}


def _crash(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    raise ValueError("Matrix size-incompatible")


@pytest.mark.parametrize(
    ("fn", "caught", "fragment"),
    [
        pytest.param(_narrow, "batch-1-shape", "output probs: expected shape [1, 3], got [1, 1]", id="narrow-output"),
        pytest.param(_first_row, "batch-n-shape", "expected shape [8, 3], got [1, 3]", id="first-row-only"),
        pytest.param(_batch_stats, "batch-invariance", "differ alone vs in a batch of 8", id="batch-statistics"),
        pytest.param(_broadcast_bug, "batch-invariance", "batchTolerance", id="broadcasting-bug"),
        pytest.param(_sigmoid, "probabilities", "do not sum to 1", id="not-normalised"),
        pytest.param(_nan_rare, "finite", "golden-set samples", id="nan-somewhere-in-golden-set"),
        pytest.param(_nan_always, "finite", "smoke sample", id="inf-everywhere"),
        pytest.param(_crash, "batch-1-shape", "predict with a batch of 1 failed", id="model-errors"),
    ],
)  # fmt: skip
async def test_smoke_catches_failure_class(
    fake: FakeFactory, fn: object, caught: str, fragment: str
) -> None:
    checks = await _smoke(fake(fn))
    failed = _failed(checks)
    assert failed and failed[0] == caught, checks
    message = next(m for name, passed, m in checks if name == caught)
    assert fragment in message


async def test_smoke_parity_compares_expected_outputs(fake: FakeFactory) -> None:
    golden = make_golden(expected=True)
    assert _failed(await _smoke(fake(), golden=golden)) == []

    def skewed(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return good_fn({"x": inputs["x"] * 0.9})

    checks = await _smoke(fake(skewed), golden=golden)
    assert _failed(checks) == ["parity"]
    assert "parityTolerance 0.001" in next(m for n, _, m in checks if n == "parity")


async def test_smoke_signature_mismatch_stops_before_predict(fake: FakeFactory) -> None:
    client = fake(inputs={"pixels": TensorInfo("float32", (-1, N_FEATURES))})
    checks = await _smoke(client)
    assert [c[0] for c in checks] == ["signature"]
    assert client.requests == []


async def test_smoke_without_golden_set_uses_synthetic_inputs(fake: FakeFactory) -> None:
    result = await run_smoke(fake(), make_contract(), SmokeSpec(batch_size=4), None)
    assert result.report.passed
    assert result.golden_outputs is None


def test_synthetic_inputs_follow_the_contract() -> None:
    inputs = synthetic_inputs(make_contract(), 5)
    assert inputs["x"].shape == (5, N_FEATURES)
    assert inputs["x"].dtype == np.float32


async def test_smoke_calls_beyond_smoke_timeout_fail_the_timeout_check(fake: FakeFactory) -> None:
    """A server answering correctly after 30 s per call: the smoke calls share
    ``smoke.timeout`` (here 1 s) and the run stops with a failed ``timeout`` check."""
    client = fake()
    answer = client.predict

    async def after_30_s(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        await asyncio.sleep(30)
        return await answer(inputs)

    client.predict = after_30_s  # type: ignore[method-assign]
    result = await asyncio.wait_for(
        run_smoke(client, make_contract(), SmokeSpec(timeout="1s")), timeout=10
    )
    last = result.report.checks[-1]
    assert not result.report.passed and last.name == "timeout", result.report.checks
    assert "smoke.timeout 1s" in last.message
    assert [c.name for c in result.report.checks] == ["signature", "timeout"]


async def test_text_for_a_float_output_is_a_failed_shape_check(fake: FakeFactory) -> None:
    def text(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"probs": np.full((len(inputs["x"]), N_CLASSES), "cat")}

    result = await run_smoke(fake(text), make_contract(), SmokeSpec())
    by_name = {c.name: c for c in result.report.checks}
    assert not by_name["batch-1-shape"].passed
    assert (
        "expected dtype float32, got values that are not numbers"
        in by_name["batch-1-shape"].message
    )
