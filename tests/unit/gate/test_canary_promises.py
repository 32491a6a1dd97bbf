"""What the gate promises beyond the test itself: labels checked against the output's
classes, an absolute accuracy floor, warnings for a golden set that cannot tell good from
broken, and a verdict record that replays to the same decision."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest

from tensorgate.api.spec import SmokeSpec
from tensorgate.engine.stats import minimum_samples, replay_verdict
from tensorgate.errors import ConfigError
from tensorgate.gate.canary import check_labels, output_classes
from tensorgate.gate.golden import GoldenSet
from tensorgate.gate.report import Decision
from tensorgate.gate.runner import GateConfig, gate_status_fields, run_gate
from tests.unit.gate.conftest import N_CLASSES, FakeFactory, make_contract, make_golden


def _with_labels(golden: GoldenSet, labels: np.ndarray) -> GoldenSet:
    return GoldenSet(inputs=golden.inputs, labels=labels, expected=golden.expected)


@pytest.mark.parametrize(
    ("labels", "classes", "message"),
    [
        pytest.param([0, 1, -1, 2, -3], 3, "2 of 5 labels must be in [0, 2] (the output has 3 classes): row 2: -1, row 4: -3", id="negative"),
        pytest.param([0, 3, 1], 3, "row 1: 3", id="beyond-width"),
        pytest.param([0, -1], None, "must be >= 0: row 1: -1", id="class-ids-negative"),
        pytest.param(list(range(-15, 0)), 3, "(+5 more)", id="many-rows-cut"),
    ],
)  # fmt: skip
def test_check_labels_names_the_rows(labels: list[int], classes: int | None, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_labels(np.asarray(labels), classes)
    assert message in str(info.value)


def test_check_labels_accepts_class_ids() -> None:
    check_labels(np.array([0, 1, 2]), 3)
    check_labels(np.array([0, 7]), None)


def test_output_classes_from_the_contract() -> None:
    probs = make_contract().outputs["probs"]
    assert output_classes(probs) == N_CLASSES
    assert output_classes(probs, 1) == 2  # a single score is binary
    ids = make_contract(ids={"dtype": "int64", "shape": [-1, 1], "kind": "classIds"})
    assert output_classes(ids.outputs["ids"]) is None


async def test_gate_rejects_labels_outside_the_output_before_calling_a_model(
    fake: FakeFactory,
) -> None:
    golden = make_golden(300)
    labels = golden.labels.copy() if golden.labels is not None else np.zeros(0)
    labels[[5, 9]] = N_CLASSES
    stable, candidate = fake(), fake()
    with pytest.raises(ConfigError, match=r"row 5: 3, row 9: 3"):
        await run_gate(
            stable, candidate, _with_labels(golden, labels), GateConfig(contract=make_contract())
        )
    assert stable.requests == [] and candidate.requests == []  # no model was asked


async def test_min_accuracy_floor_rolls_back_an_equal_but_weak_candidate(fake: FakeFactory) -> None:
    golden = make_golden(1500)  # the stable model is about 90 % right
    config = GateConfig(contract=make_contract(), smoke=SmokeSpec(), min_accuracy=0.95)
    report = await run_gate(fake(), fake(), golden, config)
    assert report.canary.non_inferior  # identical models: the test alone would promote
    assert report.decision == Decision.ROLLBACK
    assert report.caught_by == ["min-accuracy"]
    assert any("< minAccuracy 0.95" in r for r in report.reasons)
    assert (
        replay_verdict(report.canary.verdict.to_dict() if report.canary.verdict else {})
        == "rollback"
    )


async def test_stable_model_at_chance_warns(fake: FakeFactory) -> None:
    golden = make_golden(1500)
    noise = np.random.default_rng(7).integers(0, N_CLASSES, golden.size)
    report = await run_gate(
        fake(), fake(), _with_labels(golden, noise), GateConfig(contract=make_contract())
    )
    assert report.decision == Decision.PROMOTE  # identical models do not lose accuracy...
    assert any("near chance" in w for w in report.warnings)  # ...but nobody may read it as a pass
    assert any("near chance" in w for w in report.to_dict()["warnings"])
    assert gate_status_fields(report.canary)["warnings"] == list(report.canary.warnings)


async def test_good_golden_set_has_no_warnings(fake: FakeFactory) -> None:
    report = await run_gate(fake(), fake(), make_golden(1500), GateConfig(contract=make_contract()))
    assert report.decision == Decision.PROMOTE
    assert report.warnings == ()


async def test_too_small_golden_set_warns_and_cannot_promote(fake: FakeFactory) -> None:
    small = minimum_samples(0.02, 0.95) - 1
    report = await run_gate(
        fake(), fake(), make_golden(small), GateConfig(contract=make_contract())
    )
    assert report.decision == Decision.ROLLBACK
    assert any(f"{small} samples can never promote" in w for w in report.warnings)


@pytest.mark.parametrize("seed", range(4))
async def test_verdict_record_replays_to_the_gate_decision(fake: FakeFactory, seed: int) -> None:
    golden = make_golden(400)
    rng = np.random.default_rng(seed)
    flip = rng.random(golden.size) < 0.02 * seed

    def candidate(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        from tests.unit.gate.conftest import good_fn

        out = good_fn(inputs)["probs"]
        rows = flip[: out.shape[0]] if out.shape[0] == golden.size else np.zeros(out.shape[0], bool)
        return {"probs": np.where(rows[:, None], np.roll(out, 1, axis=1), out)}

    report = await run_gate(fake(), fake(candidate), golden, GateConfig(contract=make_contract()))
    record = report.canary.verdict
    assert record is not None
    assert replay_verdict(record.to_dict()) == str(report.decision)
    status = gate_status_fields(report.canary)
    assert status["verdict"] == record
    assert status["decision"] == str(report.decision)


def _sliced(golden: GoldenSet, slices: int) -> GoldenSet:
    ids = np.array([f"s{i % slices}" for i in range(golden.size)])
    return GoldenSet(golden.inputs, golden.labels, golden.expected, slices=ids)


def _broken_slice(golden: GoldenSet) -> GoldenSet:
    """Slice s0 holds the samples with feature 1 above 1.0 (about 16 %), s1..s9 the rest."""
    x = golden.inputs["x"]
    ids = np.where(x[:, 1] > 1.0, "s0", np.array([f"s{1 + i % 9}" for i in range(golden.size)]))
    return GoldenSet(golden.inputs, golden.labels, golden.expected, slices=ids)


def _breaks_slice_zero(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A candidate that answers another class wherever feature 1 is above 1.0 (slice s0)."""
    from tests.unit.gate.conftest import good_fn

    out = good_fn(inputs)["probs"]
    broken = (inputs["x"][:, 1] > 1.0)[:, None]
    return {"probs": np.where(broken, np.roll(out, 1, axis=1), out)}


@pytest.mark.parametrize("decide", [True, False])
async def test_a_broken_slice_rolls_back_only_when_slices_decide(
    fake: FakeFactory, decide: bool
) -> None:
    golden = _broken_slice(make_golden(3000))
    config = GateConfig(
        contract=make_contract(), max_accuracy_drop=0.2, slices="slice",
        slice_margin=0.05, decide_on_slices=decide,
    )  # fmt: skip
    report = await run_gate(fake(), fake(_breaks_slice_zero), golden, config)
    assert report.canary.non_inferior  # a 14-point average drop is within the 0.2 margin
    flagged = [t.slice for t in report.canary.slices if t.flagged]
    assert flagged == ["s0"]
    body = report.to_dict()["canary"]
    assert [s["slice"] for s in body["slices"] if s["flagged"]] == ["s0"]
    assert body["verdict"]["decideOnSlices"] is decide
    assert len(body["verdict"]["slices"]) == 10
    assert replay_verdict(body["verdict"]) == str(report.decision)
    if decide:
        assert report.decision == Decision.ROLLBACK
        assert report.caught_by == ["slices"]
    else:
        assert report.decision == Decision.PROMOTE
        assert any("s0 drop" in w and "reported only" in w for w in report.warnings)


async def test_equal_candidate_passes_the_slice_tests(fake: FakeFactory) -> None:
    golden = _sliced(make_golden(3000), 100)
    config = GateConfig(contract=make_contract(), slices="slice", decide_on_slices=True)
    report = await run_gate(fake(), fake(), golden, config)
    assert report.decision == Decision.PROMOTE
    assert not any(t.flagged for t in report.canary.slices)
    assert any(c.name == "slices" and c.passed for c in report.canary.checks)


def _with_production(golden: GoldenSet, shift: float) -> GoldenSet:
    """Production inputs: 2000 samples, shifted away from the golden set's distribution."""
    x = np.random.default_rng(11).normal(size=(2000, golden.inputs["x"].shape[1]))
    return GoldenSet(
        golden.inputs,
        golden.labels,
        golden.expected,
        unlabeled={"x": (x + shift).astype(np.float32)},
    )


def _breaks_far_from_home(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Right on the golden set's range, wrong wherever feature 0 is beyond 2.5."""
    from tests.unit.gate.conftest import good_fn

    out = good_fn(inputs)["probs"]
    far = (np.abs(inputs["x"][:, 0]) > 2.5)[:, None]
    return {"probs": np.where(far, np.roll(out, 1, axis=1), out)}


async def test_min_agreement_catches_a_model_broken_only_in_production(fake: FakeFactory) -> None:
    golden = _with_production(make_golden(1500), shift=3.0)
    config = GateConfig(contract=make_contract(), min_agreement=0.95)
    report = await run_gate(fake(), fake(_breaks_far_from_home), golden, config)
    assert report.canary.non_inferior  # the labelled golden set sees nothing wrong
    assert report.decision == Decision.ROLLBACK
    assert report.caught_by == ["agreement"]
    body = report.to_dict()["canary"]
    assert body["unlabeled"]["samples"] == 2000
    assert body["unlabeled"]["lowerBound"] < 0.95
    assert replay_verdict(body["verdict"]) == "rollback"


async def test_min_agreement_passes_identical_models(fake: FakeFactory) -> None:
    golden = _with_production(make_golden(1500), shift=3.0)
    config = GateConfig(contract=make_contract(), min_agreement=0.99)
    report = await run_gate(fake(), fake(), golden, config)
    assert report.decision == Decision.PROMOTE
    assert report.canary.unlabeled_agreement == 1.0
    assert replay_verdict(report.to_dict()["canary"]["verdict"]) == "promote"


async def test_min_agreement_without_production_inputs_is_a_config_error(fake: FakeFactory) -> None:
    config = GateConfig(contract=make_contract(), min_agreement=0.9)
    with pytest.raises(ConfigError, match=r"goldenSet\.unlabeled"):
        await run_gate(fake(), fake(), make_golden(300), config)


async def test_status_verdict_replays_and_verifies(fake: FakeFactory) -> None:
    """The record written to status.gate.verdict is enough to recompute the decision."""
    from tensorgate.api.status import GateStatus
    from tensorgate.engine.stats import verify_verdict

    golden = _sliced(make_golden(1500), 10)
    config = GateConfig(contract=make_contract(), slices="slice", decide_on_slices=True)
    report = await run_gate(fake(), fake(), golden, config)
    status = GateStatus().model_copy(update=gate_status_fields(report.canary)).to_dict()
    record = GateStatus.model_validate(status).to_dict()["verdict"]  # survives a round trip
    assert {"n", "b", "c", "confidence", "margin", "method", "slices"} <= set(record)
    assert len(record["slices"]) == 10
    assert verify_verdict(record | {"decision": status["decision"]})
    assert not verify_verdict(record | {"decision": "rollback"})
    with pytest.raises(ValueError, match="lacks decision"):
        verify_verdict(record)
