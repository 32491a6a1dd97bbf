"""What GitOps tools see on the real control plane: ``kubectl wait`` on the conditions and the
Argo CD health check (docs/argocd/health.lua, run by real Lua) over the live object.

The built kubectl waits on the operator's conditions exactly as a CI job or a Flux/Argo hook
does: ``--for=condition=Ready`` after the first apply, ``--for=jsonpath={.status.observedGeneration}``
for "the operator saw my change", then ``--for=condition=Progressing=False`` for "the rollout
ended". The objects' generation is set by the real API server (KMock sets none).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Cluster
from tests.integration.conftest import BROKEN, GOOD, ModelRepo
from tests.integration.operator.conftest import KubeEnv
from tests.unit.test_argocd_health import run_health

pytestmark = [pytest.mark.cluster, pytest.mark.tf]

NAME = "digits"


def _apply(cluster: Cluster, kube: KubeEnv, model_repo: ModelRepo, version: str) -> None:
    doc = model_repo.manifest(version, name=NAME)
    doc["metadata"]["namespace"] = kube.namespace
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))


async def _wait(cluster: Cluster, kube: KubeEnv, condition: str, timeout_s: int = 180) -> str:
    """`kubectl wait`, in a thread: the in-process operator runs on this test's event loop."""
    out = await asyncio.to_thread(
        cluster.kubectl,
        "wait",
        f"--for={condition}",
        f"md/{NAME}",
        "-n",
        kube.namespace,
        f"--timeout={timeout_s}s",
        timeout_s=timeout_s + 30,
        check=False,
    )
    if out.returncode != 0:
        seen = _get(cluster, kube).get("status")
        raise AssertionError(f"kubectl wait --for={condition}: {out.stderr.strip()}; {seen}")
    return out.stdout.strip()


def _get(cluster: Cluster, kube: KubeEnv) -> dict[str, Any]:
    md: dict[str, Any] = json.loads(
        cluster.kubectl("get", f"md/{NAME}", "-n", kube.namespace, "-o", "json").stdout
    )
    return md


async def _wait_observed(cluster: Cluster, kube: KubeEnv) -> dict[str, Any]:
    generation = _get(cluster, kube)["metadata"]["generation"]
    await _wait(cluster, kube, f"jsonpath={{.status.observedGeneration}}={generation}")
    return _get(cluster, kube)


def _condition(md: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in md["status"]["conditions"] if c["type"] == kind)


async def test_cluster_kubectl_wait_and_argocd_health_follow_a_rollout(
    kube: KubeEnv, operator: object, cluster: Cluster, model_repo: ModelRepo
) -> None:
    # First apply: `kubectl wait --for=condition=Ready` returns once the model serves.
    _apply(cluster, kube, model_repo, GOOD)
    assert "condition met" in await _wait(cluster, kube, "condition=Ready")
    md = _get(cluster, kube)
    assert md["status"]["phase"] == "Promoted"
    # kstatus: observedGeneration is the generation the API server set, Ready True.
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"] == 1
    assert run_health(md)[0] == "Healthy"

    # A silently broken candidate: the operator observes it, the rollout ends rolled back.
    _apply(cluster, kube, model_repo, BROKEN)
    md = _get(cluster, kube)
    assert md["metadata"]["generation"] == 2
    if md["status"].get("observedGeneration") != 2:
        assert run_health(md)[0] == "Progressing"  # what Argo CD shows before the operator acts
    await _wait_observed(cluster, kube)
    await _wait(cluster, kube, "condition=Progressing=False")
    md = _get(cluster, kube)
    assert md["status"]["phase"] == "RolledBack", md["status"]
    assert _condition(md, "Degraded")["status"] == "True"
    assert _condition(md, "Degraded")["reason"] == "AccuracyGateFailed"
    # The stable keeps serving: Ready stays True, so `kubectl wait` for Ready still passes...
    assert "condition met" in await _wait(cluster, kube, "condition=Ready", timeout_s=10)
    assert "condition met" in await _wait(cluster, kube, "condition=Degraded", timeout_s=10)
    # ...and Argo CD shows the rollback as Degraded, with the reason.
    health, message = run_health(md)
    assert health == "Degraded" and "AccuracyGateFailed" in message, message

    # Git reverts the commit: the spec names the stable model again, Argo CD shows Healthy.
    _apply(cluster, kube, model_repo, GOOD)
    md = await _wait_observed(cluster, kube)
    health, message = run_health(md)
    # The engine takes a spec back at the stable revision as Promoted (what the spec says).
    assert md["status"]["phase"] == "Promoted", md["status"]
    assert health == "Healthy" and f"version {GOOD} serving" in message, (message, md["status"])
