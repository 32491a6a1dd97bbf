"""``tensorgate history`` and ``tensorgate revert`` (revert against KMock's API server)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import typer
import yaml
from typer.testing import CliRunner

from tensorgate.api.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tensorgate.ledger.commands import register
from tensorgate.ledger.sql import open_ledger
from tensorgate.platform.kubernetes.client import KubeClient
from tests.unit.ledger.scenario import NAME, NAMESPACE, full_story, spec


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    register(app)
    return app


async def _fill(dsn: str) -> None:
    ledger = await open_ledger(dsn)
    try:
        for old, new, sp in full_story():
            await ledger.record_transition(NAMESPACE, NAME, old, new, sp)
    finally:
        await ledger.close()


async def test_history_prints_versions_accuracies_decisions(sqlite_dsn: str) -> None:
    await _fill(sqlite_dsn)
    result = await asyncio.to_thread(
        CliRunner().invoke, _app(), ["history", NAME, "-n", NAMESPACE, "--dsn", sqlite_dsn]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["STARTED", "VERSION", "FROM", "DECISION"]
    assert "3" in lines[1] and "RolledBack" in lines[1] and "0.1100" in lines[1]
    assert "Promoted" in lines[2] and "0.9500" in lines[2]


async def test_history_json_has_gate_and_phases(sqlite_dsn: str) -> None:
    await _fill(sqlite_dsn)
    result = await asyncio.to_thread(
        CliRunner().invoke,
        _app(),
        ["history", NAME, "-n", NAMESPACE, "--dsn", sqlite_dsn, "--json", "--limit", "2"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [d["candidateVersion"] for d in data] == ["3", "2"]
    assert data[0]["gate"]["canaryAccuracy"] == 0.11
    assert data[1]["phases"][-1]["to"] == "Promoted"


async def test_history_of_unknown_model_says_so(sqlite_dsn: str) -> None:
    result = await asyncio.to_thread(
        CliRunner().invoke, _app(), ["history", "nope", "--dsn", sqlite_dsn]
    )
    assert result.exit_code == 0
    assert "no rollouts of default/nope" in result.output


async def test_revert_never_promoted_version_exits_2(sqlite_dsn: str) -> None:
    await _fill(sqlite_dsn)
    result = await asyncio.to_thread(
        CliRunner().invoke,
        _app(),
        ["revert", NAME, "--to", "3", "-n", NAMESPACE, "--dsn", sqlite_dsn],
    )
    assert result.exit_code == 2
    assert "never promoted (promoted versions: 1, 2)" in result.output


@pytest.fixture
async def api(kmock: kmock.KubernetesEmulator, tmp_path: Path) -> tuple[KubeClient, Path]:
    kmock.resources.load_bundled()
    kmock.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
        kind=KIND,
        singular=KIND.lower(),
        namespaced=True,
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources={"status"},
    )
    server = str(kmock.url).rstrip("/")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kmock",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "u"}}],
            }
        )
    )
    conn = kopf.ConnectionInfo(server=server, insecure=True)
    return KubeClient(conn, timeout_s=5, retries=1), kubeconfig  # type: ignore[arg-type]


async def test_revert_patches_spec_model_from_ledger(
    sqlite_dsn: str, api: tuple[KubeClient, Path]
) -> None:
    client, kubeconfig = api
    await _fill(sqlite_dsn)
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {**spec("3"), "analysis": {"steps": [50, 100]}},
    }
    try:
        await client.apply(manifest)
        result = await asyncio.to_thread(
            CliRunner().invoke,
            _app(),
            [
                "revert",
                NAME,
                "--to",
                "1",
                "-n",
                NAMESPACE,
                "--dsn",
                sqlite_dsn,
                "--kubeconfig",
                str(kubeconfig),
            ],
        )
        assert result.exit_code == 0, result.output
        assert "version 3 -> 1" in result.output
        body = await client.get(f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{NAME}")
        assert body is not None
        assert body["spec"]["model"] == spec("1")["model"]
        assert body["spec"]["analysis"] == {"steps": [50, 100]}  # only spec.model changed
    finally:
        await client.aclose()


async def test_revert_missing_resource_exits_1(
    sqlite_dsn: str, api: tuple[KubeClient, Path]
) -> None:
    client, kubeconfig = api
    await client.aclose()
    await _fill(sqlite_dsn)
    result = await asyncio.to_thread(
        CliRunner().invoke,
        _app(),
        [
            "revert",
            NAME,
            "--to",
            "1",
            "-n",
            NAMESPACE,
            "--dsn",
            sqlite_dsn,
            "--kubeconfig",
            str(kubeconfig),
        ],
    )
    assert result.exit_code == 1
    assert "HTTP 404" in result.output
