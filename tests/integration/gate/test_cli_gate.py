"""``tensorgate gate`` end to end: PATHs served in-process, URLs of a running server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tensorgate.cli import app
from tests.integration.gate.conftest import Served

pytestmark = pytest.mark.tf

runner = CliRunner()


def _contract_file(tmp_path: Path, entry: Served) -> Path:
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(entry.family.contract()))
    return path


def _gate(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["gate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_gate_paths_identical_promotes_with_json(
    tmp_path: Path, served: dict[str, Served]
) -> None:
    entry = served["digits"]
    code, out, _ = _gate(
        "--stable", str(entry.base / "1"),
        "--candidate", str(entry.base / "2"),
        "--golden", str(entry.golden_path),
        "--contract", str(_contract_file(tmp_path, entry)),
        "--json",
    )  # fmt: skip
    assert code == 0, out
    body = json.loads(out)
    assert body["decision"] == "promote"
    assert body["smoke"]["passed"] is True
    assert {"name", "passed", "message"} <= set(body["smoke"]["checks"][0])
    canary = body["canary"]
    assert canary["ran"] is True
    for key in ("stableAccuracy", "candidateAccuracy", "drop", "upperBound", "samples", "pValue"):
        assert key in canary
    assert canary["samples"] == 2000
    assert body["reasons"]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_cli_gate_urls_collapse_rolls_back(
    tmp_path: Path, served: dict[str, Served], scheme: str
) -> None:
    entry = served["digits"]
    server = entry.server
    port = server.rest_port if scheme == "http" else server.grpc_port  # type: ignore[attr-defined]
    base = f"{scheme}://127.0.0.1:{port}/v1/models/{entry.family.name}/versions"
    code, out, _ = _gate(
        "--stable", f"{base}/{entry.versions['good']}",
        "--candidate", f"{base}/{entry.versions['collapse']}",
        "--golden", str(entry.golden_path),
        "--contract", str(_contract_file(tmp_path, entry)),
        "--json",
    )  # fmt: skip
    assert code == 1, out
    body = json.loads(out)
    assert body["decision"] == "rollback"
    assert body["caughtBy"] == ["accuracy"]


def test_cli_gate_smoke_failure_skips_canary_and_prints_report(
    tmp_path: Path, served: dict[str, Served]
) -> None:
    entry = served["digits"]
    code, out, _ = _gate(
        "--stable", str(entry.base / "1"),
        "--candidate", str(entry.base / str(entry.versions["batch-stats"])),
        "--golden", str(entry.golden_path),
        "--contract", str(_contract_file(tmp_path, entry)),
        "--protocol", "rest",
        "--json",
    )  # fmt: skip
    assert code == 1
    body = json.loads(out)
    assert body["canary"] == {"ran": False}
    assert body["caughtBy"][0] == "batch-invariance"
    code, out, _ = _gate(
        "--stable", str(entry.base / "1"),
        "--candidate", str(entry.base / str(entry.versions["batch-stats"])),
        "--golden", str(entry.golden_path),
        "--contract", str(_contract_file(tmp_path, entry)),
    )  # fmt: skip
    assert code == 1
    assert "decision: rollback" in out
    assert "batch-invariance" in out


def test_cli_gate_bad_inputs_exit_2(tmp_path: Path, served: dict[str, Served]) -> None:
    entry = served["digits"]
    contract = _contract_file(tmp_path, entry)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, other=np.zeros((3, 16), np.float32), labels=np.zeros(3))
    bad_contract = tmp_path / "bad.yaml"
    bad_contract.write_text("inputs: {x: {dtype: float99, shape: [-1]}}\n")
    model = str(entry.base / "1")
    cases = [
        ["--golden", str(wrong), "--contract", str(contract)],
        ["--golden", str(tmp_path / "missing.npz"), "--contract", str(contract)],
        ["--golden", str(entry.golden_path), "--contract", str(bad_contract)],
    ]
    for extra in cases:
        code, _, err = _gate("--stable", model, "--candidate", model, *extra)
        assert code == 2, (extra, err)
        assert err.strip()
    code, _, err = _gate(
        "--stable", "ftp://example/models",
        "--candidate", model,
        "--golden", str(entry.golden_path),
        "--contract", str(contract),
    )  # fmt: skip
    assert code == 2
    assert "unsupported scheme" in err


def test_cli_plan_measures_disagreement_on_real_models(
    tmp_path: Path, served: dict[str, Served]
) -> None:
    """``tensorgate plan --stable/--candidate`` scores both real models on the golden set."""
    entry = served["digits"]
    result = runner.invoke(
        app,
        [
            "plan", "--max-accuracy-drop", "0.02", "--json",
            "--stable", str(entry.base / "1"),
            "--candidate", str(entry.base / "2"),
            "--golden", str(entry.golden_path),
            "--contract", str(_contract_file(tmp_path, entry)),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert body["disagreementMeasured"] is True
    assert 0.0 <= body["disagreement"] <= 1.0
    assert body["minSamples"] == 222
    assert body["minSamples"] <= body["samplesFor80"] <= body["samplesFor95"]


@pytest.mark.parametrize("broken", ["no-savedmodel", "empty-version", "corrupt-pb", "no-variables"])
def test_cli_gate_broken_model_folder_exits_2_naming_it(
    tmp_path: Path, served: dict[str, Served], broken: str
) -> None:
    """Issue 12, bad data: a candidate folder with no SavedModel, an empty version folder, a
    ``saved_model.pb`` that is not one, or a SavedModel without its variables: exit 2 naming
    the folder (the gate cannot run), never a traceback, never a promotion. TF Serving
    refuses to start on such a folder too (``model_servers/server_core.cc``: the initial
    load error is returned by ``ConnectAdaptersToManagerAndAwaitModelLoads``)."""
    import shutil

    entry = served["digits"]
    candidate = tmp_path / "candidate"
    if broken == "no-savedmodel":
        (candidate / "assets").mkdir(parents=True)
    elif broken == "empty-version":
        (candidate / "3").mkdir(parents=True)
    else:
        shutil.copytree(entry.base / "2", candidate)
        if broken == "corrupt-pb":
            (candidate / "saved_model.pb").write_bytes(b"\x0a\xff\xff this is no SavedModel")
        else:
            shutil.rmtree(candidate / "variables")
    result = runner.invoke(
        app,
        [
            "gate", "--stable", str(entry.base / "1"), "--candidate", str(candidate),
            "--golden", str(entry.golden_path), "--contract", str(_contract_file(tmp_path, entry)),
        ],
    )  # fmt: skip
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 2, result.output
    assert str(candidate) in result.stderr, result.stderr
