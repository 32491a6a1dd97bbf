"""Canary comparison on fake models, and reading classes from outputs."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from tensorgate.api.spec import SmokeSpec, TensorSpec
from tensorgate.errors import ConfigError
from tensorgate.gate.canary import compare, predicted_classes, recall_changes
from tensorgate.gate.report import Decision
from tensorgate.gate.runner import GateConfig, run_gate
from tests.unit.gate.conftest import N_CLASSES, FakeFactory, good_fn, make_contract, make_golden


def _spec(kind: str | None, width: int = 3, dtype: str = "float32") -> TensorSpec:
    return TensorSpec.model_validate({"dtype": dtype, "shape": [-1, width], "kind": kind})


@pytest.mark.parametrize(
    ("output", "spec", "expected"),
    [
        pytest.param([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], _spec("probabilities"), [1, 0], id="probabilities-argmax"),
        pytest.param([[-1.0, 3.0], [2.0, -5.0]], _spec("logits", 2), [1, 0], id="logits-argmax"),
        pytest.param([[0.7], [0.2]], _spec("probabilities", 1), [1, 0], id="binary-probability-threshold"),
        pytest.param([[0.3], [-0.2]], _spec("logits", 1), [1, 0], id="binary-logit-threshold"),
        pytest.param([[4], [7]], _spec("classIds", 1, "int64"), [4, 7], id="class-ids-column"),
        pytest.param([4, 7], TensorSpec.model_validate({"dtype": "int64", "shape": [-1], "kind": "classIds"}), [4, 7], id="class-ids-vector"),
        pytest.param([[np.nan, 0.1, 0.2], [0.1, 0.8, 0.1]], _spec("probabilities"), [-1, 1], id="nan-row-never-right"),
    ],
)  # fmt: skip
def test_predicted_classes_by_kind(output: object, spec: TensorSpec, expected: list[int]) -> None:
    assert predicted_classes(np.asarray(output), spec).tolist() == expected


def test_predicted_classes_rejects_regression() -> None:
    with pytest.raises(ConfigError, match="regression"):
        predicted_classes(np.zeros((2, 1)), _spec("regression", 1))


def test_recall_changes_lists_classes_that_fell_beyond_margin() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    stable = labels.copy()
    candidate = np.array([0, 0, 0, 0, 1, 0, 0, 0])
    changes = recall_changes(labels, stable, candidate, 0.02)
    assert [(c.label, c.support, c.drop) for c in changes] == [(1, 4, 0.75)]


async def test_compare_counts_discordant_pairs(fake: FakeFactory) -> None:
    golden = make_golden(300)

    def worse(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = good_fn(inputs)["probs"]
        shifted = np.roll(out, 1, axis=1)  # a different class wherever feature 0 is large
        return {"probs": np.where((inputs["x"][:, 0] > 1.0)[:, None], shifted, out)}

    report = await compare(
        fake(), fake(worse), golden,
        prediction_output="probs", output_spec=make_contract().outputs["probs"],
        max_accuracy_drop=0.02, confidence=0.95,
    )  # fmt: skip
    assert report.samples == 300
    assert report.drop == pytest.approx(
        (report.stable_only_correct - report.candidate_only_correct) / 300
    )
    assert report.stable_accuracy == pytest.approx(0.9, abs=0.05)
    assert report.stable_accuracy - report.candidate_accuracy == pytest.approx(report.drop)
    assert not report.passed
    assert report.checks and report.checks[0].name == "candidate-finite"


async def test_run_gate_identical_promotes_and_collapse_rolls_back(fake: FakeFactory) -> None:
    golden = make_golden(1500)
    config = GateConfig(contract=make_contract(), smoke=SmokeSpec())
    same = await run_gate(fake(), fake(), golden, config)
    assert same.decision == Decision.PROMOTE
    assert same.canary.drop == 0

    def constant(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = inputs["x"].shape[0]
        p = np.full((n, N_CLASSES), 0.1, np.float32)
        p[:, 0] = 0.8
        return {"probs": p}

    collapsed = await run_gate(fake(), fake(constant), golden, config)
    assert collapsed.decision == Decision.ROLLBACK
    assert collapsed.smoke.passed  # well-formed all along
    assert collapsed.caught_by == ["accuracy"]
    body = collapsed.to_dict()
    assert body["canary"]["ran"] is True
    assert body["reasons"][-1].startswith("accuracy drop upper bound")


async def test_run_gate_needs_labels(fake: FakeFactory) -> None:
    golden = make_golden(50)
    unlabeled = type(golden)(inputs=golden.inputs, labels=None, expected={})
    with pytest.raises(ConfigError, match="labels"):
        await run_gate(fake(), fake(), unlabeled, GateConfig(contract=make_contract()))
