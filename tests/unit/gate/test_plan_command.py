"""``tensorgate plan`` and ``validate``'s golden-set warning; the planner's minimum is where
the gate itself starts to promote two identical models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tensorgate.cli import app
from tensorgate.gate.report import Decision
from tensorgate.gate.runner import GateConfig, run_gate
from tests.unit.api.test_crd_table import with_
from tests.unit.gate.conftest import FakeFactory, make_contract, make_golden

runner = CliRunner()


def _plan(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["plan", *args])
    return result.exit_code, result.stdout, result.stderr


def test_plan_json_prints_the_three_numbers() -> None:
    code, out, _ = _plan("--max-accuracy-drop", "0.02", "--disagreement", "0.05", "--json")
    assert code == 0
    body = json.loads(out)
    assert (body["minSamples"], body["samplesFor80"], body["samplesFor95"]) == (222, 923, 1511)
    assert body["disagreementMeasured"] is False


def test_plan_text_says_one_sided() -> None:
    code, out, _ = _plan("--max-accuracy-drop", "0.05", "--confidence", "0.9")
    assert code == 0
    assert "one-sided" in out
    assert "minSamples" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-accuracy-drop", "0.5"], "maxAccuracyDrop"),
        (["--max-accuracy-drop", "0.02", "--confidence", "0.3"], "confidence"),
        (["--max-accuracy-drop", "0.02", "--disagreement", "0.1", "--stable", "/m"], "not both"),
        (["--max-accuracy-drop", "0.02", "--stable", "/m"], "needs --stable, --candidate"),
        (["--max-accuracy-drop", "0.02", "--disagreement", "2"], "disagreement must be in"),
    ],
)
def test_plan_rejects_bad_options(args: list[str], message: str) -> None:
    code, _, err = _plan(*args)
    assert code == 2
    assert message in err


@pytest.mark.parametrize("margin", [0.02, 0.05])
async def test_identical_models_promote_at_min_samples_and_not_one_below(
    fake: FakeFactory, margin: float
) -> None:
    _, out, _ = _plan("--max-accuracy-drop", str(margin), "--disagreement", "0", "--json")
    minimum = json.loads(out)["minSamples"]
    config = GateConfig(contract=make_contract(), max_accuracy_drop=margin)
    at = await run_gate(fake(), fake(), make_golden(minimum), config)
    below = await run_gate(fake(), fake(), make_golden(minimum - 1), config)
    assert at.decision == Decision.PROMOTE
    assert below.decision == Decision.ROLLBACK
    assert below.caught_by == ["accuracy"]
    assert any("can never promote" in w for w in below.warnings)


def _manifest(tmp_path: Path, samples: int, margin: float = 0.02) -> Path:
    golden = tmp_path / "golden.npz"
    np.savez(golden, pixels=np.zeros((samples, 784), np.float32), labels=np.zeros(samples, int))
    doc = with_("spec.goldenSet", {"uri": str(golden), "features": "pixels"})
    doc["spec"]["analysis"] = {"maxAccuracyDrop": margin}
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_validate_warns_when_a_local_golden_set_can_never_promote(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "-f", str(_manifest(tmp_path, 100))])
    assert result.exit_code == 0
    assert "100 samples can never promote" in result.stderr
    assert ">= 222" in result.stderr


def test_validate_is_quiet_for_a_large_enough_golden_set(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "-f", str(_manifest(tmp_path, 300))])
    assert result.exit_code == 0
    assert result.stderr == ""


def test_validate_warns_that_a_zero_margin_never_promotes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "-f", str(_manifest(tmp_path, 300, 0.0))])
    assert result.exit_code == 0
    assert "zero margin is never proven" in result.stderr
