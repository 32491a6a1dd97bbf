"""The operator's own /metrics and the SQL ledger are fed by real reconciles."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tensorgate.ledger.sql import open_ledger
from tests.integration.conftest import BROKEN, GOOD, ModelRepo
from tests.integration.operator import rollout_scenarios as rs
from tests.integration.operator.conftest import KubeEnv, OperatorStarter
from tests.integration.operator.kmock_player import playing

pytestmark = pytest.mark.tf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_operator_metrics_and_ledger_record_a_rollback(
    kube: KubeEnv, start_operator: OperatorStarter, model_repo: ModelRepo, tmp_path: Path
) -> None:
    dsn = f"sqlite:///{tmp_path / 'ledger.db'}"
    port = free_port()
    async with playing(kube):
        await start_operator(ledger_dsn=dsn, metrics_port=port)
        await rs.deploy_stable(kube, model_repo)
        await kube.apply_md(model_repo.manifest(BROKEN))
        await rs.wait_phase(kube, "RolledBack", timeout_s=120)
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert "tensorgate_rollout_phase{" in text
    rollbacks = [
        line
        for line in text.splitlines()
        if line.startswith("tensorgate_rollbacks_total{") and kube.namespace in line
    ]
    assert rollbacks and rollbacks[0].endswith(" 1.0"), rollbacks
    assert "AccuracyGateFailed" in rollbacks[0]

    ledger = await open_ledger(dsn)
    try:
        history = await ledger.history(kube.namespace, rs.NAME)
    finally:
        await ledger.close()
    latest = history[0]
    assert (latest.candidate_version, latest.stable_version) == (BROKEN, GOOD)
    assert latest.decision == "RolledBack" and "AccuracyGateFailed" in latest.reason
    assert latest.gate is not None and latest.gate.canary_accuracy is not None
    assert latest.gate.canary_accuracy < 0.3
    assert [p.to_phase for p in latest.phases][-1] == "RolledBack"
