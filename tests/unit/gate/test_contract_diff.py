"""The contract diff between the stable and the candidate's served signatures."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from tensorgate.gate.contract_diff import diff_signatures
from tensorgate.gate.report import Decision
from tensorgate.gate.runner import GateConfig, run_gate
from tensorgate.serving.base import Signature, TensorInfo
from tests.unit.gate.conftest import (
    N_CLASSES,
    N_FEATURES,
    FakeFactory,
    good_fn,
    make_contract,
    make_golden,
)

X = TensorInfo("float32", (-1, N_FEATURES))
PROBS = TensorInfo("float32", (-1, N_CLASSES))


def _sig(inputs: dict[str, TensorInfo], outputs: dict[str, TensorInfo] | None = None) -> Signature:
    return Signature("serving_default", inputs, outputs or {"probs": PROBS})


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        pytest.param(_sig({"x": X}), [], id="same"),
        pytest.param(_sig({"features": X}), ["input x renamed to features"], id="renamed"),
        pytest.param(_sig({}), ["input x removed (was float32 [-1, 4])"], id="removed"),
        pytest.param(_sig({"x": X, "mask": TensorInfo("bool", (-1,))}), ["input mask added (bool [-1])"], id="added"),
        pytest.param(_sig({"x": TensorInfo("float64", (-1, N_FEATURES))}), ["input x: dtype float32 -> float64"], id="dtype"),
        pytest.param(_sig({"x": TensorInfo("float32", (-1, N_FEATURES, 1))}), ["input x: rank [-1, 4] -> [-1, 4, 1]"], id="rank"),
        pytest.param(_sig({"x": TensorInfo("float32", (-1, 8))}), ["input x: dims [-1, 4] -> [-1, 8]"], id="fixed-dim"),
        pytest.param(_sig({"x": TensorInfo("float32", None)}), ["input x: rank [-1, 4] -> unknown rank"], id="unknown-rank"),
        pytest.param(_sig({"x": X}, {"probs": TensorInfo("float32", (-1, 1))}), ["output probs: dims [-1, 3] -> [-1, 1]"], id="output-dims"),
    ],
)  # fmt: skip
def test_diff_signatures(candidate: Signature, expected: list[str]) -> None:
    diff = diff_signatures(_sig({"x": X}), candidate)
    assert diff.lines() == expected
    assert diff.is_empty is (expected == [])
    assert diff.to_dict()["changed"] is bool(expected)


def _renamed(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return good_fn({"x": inputs["features"]})


async def test_renamed_needed_input_fails_smoke_with_the_diff(fake: FakeFactory) -> None:
    candidate = fake(_renamed, inputs={"features": X})
    report = await run_gate(
        fake(), candidate, make_golden(300), GateConfig(contract=make_contract())
    )
    assert report.decision == Decision.ROLLBACK
    assert report.caught_by == ["signature"]
    message = report.smoke.checks[0].message
    assert "input x: missing" in message
    assert "changed since the stable model: input x renamed to features" in message
    body = report.to_dict()["smoke"]["contractDiff"]
    assert body["changed"] is True
    assert body["changes"][0]["kind"] == "renamed"


async def test_unchanged_signature_reports_an_empty_diff(fake: FakeFactory) -> None:
    report = await run_gate(fake(), fake(), make_golden(300), GateConfig(contract=make_contract()))
    assert report.smoke.contract_diff is not None
    assert report.smoke.contract_diff.is_empty
    assert report.to_dict()["smoke"]["contractDiff"] == {"changed": False, "changes": []}


async def test_added_optional_output_is_reported_but_does_not_fail(fake: FakeFactory) -> None:
    def more(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = good_fn(inputs)
        return out | {"logits": np.log(out["probs"])}

    candidate = fake(more, outputs={"probs": PROBS, "logits": PROBS})
    report = await run_gate(
        fake(), candidate, make_golden(300), GateConfig(contract=make_contract())
    )
    assert report.smoke.passed
    assert report.smoke.contract_diff is not None
    assert report.smoke.contract_diff.lines() == ["output logits added (float32 [-1, 3])"]
