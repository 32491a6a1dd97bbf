"""Security on the real control plane (issue 12, item 5).

- The ``restricted`` Pod Security Standard, ENFORCED by the real kube-apiserver (its
  PodSecurity admission plugin is on by default since 1.25; the test first shows a privileged
  pod refused there): the serving pods of a rollout and the chart's operator Deployment
  (rendered by the real Helm engine, helm_python) are admitted and run in such a namespace.
- No secret value in the operator's logs, Events, status or /metrics: a planted Secret the
  serving pods read (``serving.credentialsSecret``) and a ledger DSN with a password.
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import ROOT, Cluster
from tests.e2e.operator_process import operator_processes
from tests.helpers import eventually
from tests.integration.conftest import GOOD, ModelRepo
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.rollout_scenarios import NAME, wait_phase

pytestmark = [pytest.mark.cluster, pytest.mark.tf]

ENFORCE = "pod-security.kubernetes.io/enforce"
NO_CHECKS: dict[str, Any] = {"steps": [100], "interval": "2s", "metrics": []}
PLANTED = "planted-secret-value-7f3a"
DSN_PASSWORD = "planted-dsn-password-91c2"


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _restrict(cluster: Cluster, namespace: str) -> None:
    """Label the namespace restricted and show the API server enforces it."""
    cluster.kubectl("label", "namespace", namespace, f"{ENFORCE}=restricted", "--overwrite")
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": namespace},
        "spec": {
            "containers": [
                {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
            ]
        },
    }
    out = cluster.kubectl("apply", "-f", "-", stdin=json.dumps(privileged), check=False)
    assert out.returncode != 0 and "violates PodSecurity" in out.stderr, out.stderr


def _chart_operator(namespace: str) -> list[dict[str, Any]]:
    """The chart's operator Deployment and the ServiceAccount it runs as (real Helm engine)."""
    import helm_python

    rendered = helm_python.Chart.load(str(ROOT / "charts" / "tensorgate")).render(
        {"image": {"repository": "ghcr.io/tensorgate/tensorgate", "tag": "pss"}},
        name="tg-pss",
        namespace=namespace,
        is_install=True,
    )
    docs = [
        doc
        for path, text in rendered.items()
        if path.endswith((".yaml", ".yml"))
        for doc in yaml.safe_load_all(text)
        if doc and doc["kind"] in ("Deployment", "ServiceAccount")
    ]
    assert sorted(d["kind"] for d in docs) == ["Deployment", "ServiceAccount"], docs
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return docs


async def _pods(kube: KubeEnv, selector: str) -> list[dict[str, Any]]:
    return list(await kube.client.list(kube.path("v1", "Pod"), selector))


async def test_cluster_restricted_pod_security_admits_serving_and_operator_pods(
    cluster: Cluster, kube: KubeEnv, model_repo: ModelRepo, tmp_path: Path
) -> None:
    """In a namespace where the API server enforces ``restricted``: a rollout's serving pods
    are created (no FailedCreate), Ready and Promoted, and the chart's operator Deployment
    gets its pod."""
    _restrict(cluster, kube.namespace)
    args = ["--interval", "1"]
    with operator_processes(kube.connection, kube.namespace, tmp_path / "ops", args) as ops:
        ops.start()
        await kube.apply_md(model_repo.manifest(GOOD, **NO_CHECKS))
        await wait_phase(kube, "Promoted", version=GOOD, timeout_s=120)
    serving = await _pods(kube, "app.kubernetes.io/name=tfserving")
    assert serving, "no serving pod"
    for doc in sorted(_chart_operator(kube.namespace), key=lambda d: d["kind"] != "ServiceAccount"):
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))  # its account first

    async def operator_pod() -> list[dict[str, Any]]:
        return await _pods(kube, "app.kubernetes.io/instance=tg-pss")

    await eventually(operator_pod, timeout_s=60, every_s=0.5, what="the chart's operator pod")
    refused = [
        e["message"]
        for e in await kube.client.list(kube.path("v1", "Event"))
        if e.get("reason") == "FailedCreate" and "PodSecurity" in e.get("message", "")
    ]
    assert refused == [], refused


async def test_cluster_no_secret_in_logs_events_status_or_metrics(
    cluster: Cluster, kube: KubeEnv, model_repo: ModelRepo, tmp_path: Path
) -> None:
    """A Secret the serving pods read (serving.credentialsSecret) and a ledger DSN with a
    password (its database unreachable: the outbox keeps the rows): neither value is in the
    operator's logs, the object's Events or status, or its /metrics; /metrics carries no
    model data (model URI, golden-set path)."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "model-reader", "namespace": kube.namespace},
        "stringData": {"AWS_SECRET_ACCESS_KEY": PLANTED},
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(secret))
    dsn = f"postgresql://tg:{DSN_PASSWORD}@127.0.0.1:{_free_port()}/tg"
    port = _free_port()
    args = ["--interval", "1", "--ledger-dsn", dsn, "--metrics-port", str(port)]
    doc = model_repo.manifest(GOOD, **NO_CHECKS)
    doc["spec"]["serving"]["credentialsSecret"] = "model-reader"
    with operator_processes(kube.connection, kube.namespace, tmp_path / "ops", args) as ops:
        ops.start()
        await kube.apply_md(doc)
        md = await wait_phase(kube, "Promoted", version=GOOD, timeout_s=120)
        async with httpx.AsyncClient(timeout=10) as http:
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        logs = ops.logs()
    events = [
        e
        for e in await kube.client.list(kube.path("v1", "Event"))
        if (e.get("involvedObject") or {}).get("name") == NAME
    ]
    exposed = {
        "logs": logs,
        "events": json.dumps(events),
        "status": json.dumps(md["status"]),
        "metrics": metrics,
    }
    for where, text in exposed.items():
        assert PLANTED not in text, where
        assert DSN_PASSWORD not in text, where
    assert "tensorgate" in metrics  # the operator's own metrics are there
    for model_data in (str(model_repo.base), str(model_repo.golden)):
        assert model_data not in metrics, model_data
