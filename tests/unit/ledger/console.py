"""Run the installed ``tensorgate`` console script in a subprocess, on this checkout's code.

The script is the one ``pip install`` put beside the interpreter (``[project.scripts]``), so
these tests exercise what a user runs, including how ``cli.py`` registers its commands.
``PYTHONPATH`` points at this checkout's ``operator/`` so its code (not another checkout's
editable install) is what runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import kopf
import yaml
from sqlalchemy import update

import tensorgate
from tensorgate.api.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tensorgate.ledger.base import RolloutRecord
from tensorgate.ledger.models import GateResultRow
from tensorgate.ledger.sql import open_sql_ledger
from tensorgate.platform.kubernetes.client import KubeClient
from tests.helpers import require
from tests.unit.ledger.scenario import NAME, NAMESPACE, full_story, spec

SCRIPT = Path(sys.executable).parent / "tensorgate"
OPERATOR_DIR = Path(tensorgate.__file__).resolve().parent.parent
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def tensorgate_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """``tensorgate ARGS`` as a subprocess (non-blocking: an in-process API server keeps
    serving meanwhile); fails the test on a missing script or after ``TIMEOUT_S``."""
    require(SCRIPT.exists(), f"the tensorgate console script ({SCRIPT})", "make venv")
    inherited = {k: v for k, v in os.environ.items() if k != "TENSORGATE_LEDGER_DSN"}
    environ = {
        **inherited,
        "PYTHONPATH": os.pathsep.join(
            [str(OPERATOR_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "COLUMNS": "200",
        **(env or {}),
    }
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"tensorgate {' '.join(args)} ran over {TIMEOUT_S}s") from None
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


# --- what the unit (SQLite) and integration (PostgreSQL) tests of the commands share -------


async def fill(dsn: str) -> None:
    """The scenario's v1 first deploy, v2 promoted, v3 rolled back, in the ledger at ``dsn``."""
    ledger = await open_sql_ledger(dsn)
    try:
        for old, new, sp in full_story():
            await ledger.record_transition(NAMESPACE, NAME, old, new, sp)
    finally:
        await ledger.close()


async def tamper_verdict(dsn: str) -> RolloutRecord:
    """Turn v3's stored 'rollback' into 'promote' behind the ledger's back; v3's record."""
    ledger = await open_sql_ledger(dsn)
    try:
        with ledger.engine.begin() as conn:
            conn.execute(
                update(GateResultRow)
                .where(GateResultRow.decision == "rollback")
                .values(decision="promote")
            )
        return (await ledger.history(NAMESPACE, NAME))[0]
    finally:
        await ledger.close()


async def expect_verify_fails_on(dsn: str, record: RolloutRecord) -> None:
    result = await tensorgate_cli("history", NAME, "-n", NAMESPACE, "--dsn", dsn, "--verify")
    assert result.exit_code == 1, result.output
    assert f"error: rollout {record.id} ({record.rollout_key}, version 3)" in result.stderr
    assert "MISMATCH" in result.stdout


def kmock_api(emulator: kmock.KubernetesEmulator, tmp_path: Path) -> tuple[KubeClient, Path]:
    """KMock serving ModelDeployments, a client on it, and a kubeconfig file pointing at it."""
    emulator.resources.load_bundled()
    emulator.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
        kind=KIND,
        singular=KIND.lower(),
        namespaced=True,
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        subresources={"status"},
    )
    server = str(emulator.url).rstrip("/")
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


async def revert_and_check(dsn: str, api: tuple[KubeClient, Path]) -> None:
    """Revert v3 -> v1 through the console script; only spec.model changes, to v1's model."""
    client, kubeconfig = api
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {**spec("3"), "analysis": {"steps": [50, 100]}},
    }
    try:
        await client.apply(manifest)
        result = await tensorgate_cli(
            "revert", NAME, "--to", "1", "-n", NAMESPACE, "--dsn", dsn,
            "--kubeconfig", str(kubeconfig),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "version 3 -> 1" in result.stdout
        body = await client.get(f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{NAME}")
        assert body is not None
        assert body["spec"]["model"] == spec("1")["model"]
        assert body["spec"]["analysis"] == {"steps": [50, 100]}  # only spec.model changed
    finally:
        await client.aclose()
