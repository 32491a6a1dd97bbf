"""`tensorgate validate` and `tensorgate render`."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tensorgate.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_render_gpu_example_prints_gpu_deployment_and_service() -> None:
    result = runner.invoke(app, ["render", "-f", str(ROOT / "examples" / "mnist-gpu.yaml")])
    assert result.exit_code == 0, result.output
    objs = list(yaml.safe_load_all(result.stdout))
    kinds = [o["kind"] for o in objs]
    assert "Service" in kinds and "ConfigMap" in kinds
    dep = next(o for o in objs if o["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert "&id" not in result.stdout  # no YAML anchors


def test_render_json_and_stdin() -> None:
    text = (ROOT / "examples" / "cpu-pvc.yaml").read_text()
    result = runner.invoke(app, ["render", "-f", "-", "-o", "json"], input=text)
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    dep = next(o for o in items if o["kind"] == "Deployment")
    assert "tolerations" not in dep["spec"]["template"]["spec"]


def test_validate_reports_every_bad_field_and_exits_2(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "mnist-gpu.yaml").read_text())
    del doc["spec"]["model"]["uri"]
    doc["spec"]["serving"]["gpu"]["count"] = -1
    good = yaml.safe_load((ROOT / "examples" / "cpu-pvc.yaml").read_text())
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all([good, doc]))
    result = runner.invoke(app, ["validate", "-f", str(path)])
    assert result.exit_code == 2
    assert "spec.model.uri" in result.stderr
    assert "spec.serving.gpu.count" in result.stderr
    assert "#1" in result.stderr  # which document


def test_validate_good_examples_prints_nothing() -> None:
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        result = runner.invoke(app, ["validate", "-f", str(example)])
        assert result.exit_code == 0, (example, result.output)
        assert result.stdout == ""


def test_validate_unreadable_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
