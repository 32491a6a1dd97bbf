"""The real kopf operator (KMock API, real TF Serving) rolls back a broken model while its
real PostgreSQL ledger is stopped; once PostgreSQL is back, the ledger has the rollback.

Proves the wiring: ``tensorgate run --ledger-spool-dir`` -> ``Settings.ledger_spool_dir`` ->
``open_ledger`` (the outbox) in the operator, its pending gauge on the operator's /metrics,
and the spool file on disk while the database is down.
"""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tensorgate.ledger.durable import SPOOL_FILE
from tensorgate.ledger.sql import open_sql_ledger
from tests.helpers import eventually
from tests.integration.conftest import BROKEN, GOOD, ModelRepo
from tests.integration.ledger.conftest import RestartablePostgres
from tests.integration.operator import rollout_scenarios as rs
from tests.integration.operator.conftest import (  # noqa: F401 - fixtures used by name
    KubeEnv,
    OperatorStarter,
    kube,
    start_operator,
)
from tests.integration.operator.kmock_player import playing

pytestmark = [pytest.mark.tf, pytest.mark.postgres]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_rollback_during_a_postgres_outage_reaches_the_ledger(
    kube: KubeEnv,  # noqa: F811
    start_operator: OperatorStarter,  # noqa: F811
    model_repo: ModelRepo,
    restartable_postgres: RestartablePostgres,
    tmp_path: Path,
) -> None:
    pg, spool, port = restartable_postgres, tmp_path / "spool", _free_port()
    dsn = pg.dsn("ledger")
    metrics = f"http://127.0.0.1:{port}/metrics"

    async def pending() -> float | None:
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(metrics)).text
        for line in text.splitlines():
            if line.startswith("tensorgate_ledger_outbox_pending "):
                return float(line.split()[1])
        return None

    async def drained() -> bool:
        return await pending() == 0

    async with playing(kube):
        await start_operator(
            ledger_dsn=dsn, ledger_spool_dir=str(spool), metrics_port=port, retries=1
        )
        await rs.deploy_stable(kube, model_repo)
        pg.stop()
        await kube.apply_md(model_repo.manifest(BROKEN))
        await rs.wait_phase(kube, "RolledBack", timeout_s=120)
        waiting = await pending()
        assert waiting is not None and waiting >= 1, waiting
        assert len((spool / SPOOL_FILE).read_text().splitlines()) == waiting
        pg.start()
        await eventually(drained, timeout_s=60, every_s=0.5, what="the outbox written")

    ledger = await open_sql_ledger(dsn)
    try:
        history = await ledger.history(kube.namespace, rs.NAME)
    finally:
        await ledger.close()
    latest = history[0]
    assert (latest.candidate_version, latest.stable_version) == (BROKEN, GOOD)
    assert latest.decision == "RolledBack" and "AccuracyGateFailed" in latest.reason
    phases = [(p.from_phase, p.to_phase, p.at) for p in latest.phases]
    assert phases[-1][1] == "RolledBack"
    assert len(phases) == len(set(phases))  # exactly once
    assert latest.gate is not None and latest.gate.inputs is not None
    assert latest.gate.inputs["gate"]["decision"] == "rollback"
