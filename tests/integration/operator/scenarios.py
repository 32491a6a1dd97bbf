"""Operator scenarios written once, run on every backend ``KubeEnv`` offers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tensorgate.api.spec import API_VERSION, KIND, parse_resource
from tensorgate.errors import KubeAPIError
from tensorgate.platform.kubernetes.manifests import models_config_key
from tests.helpers import eventually
from tests.integration.operator.conftest import KubeEnv

MNIST: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": KIND,
    "metadata": {"name": "mnist"},
    "spec": {
        "model": {"name": "mnist", "version": "1", "uri": "/models/mnist"},
        "serving": {"replicas": 1, "gpu": {"count": 1}},
        "contract": {
            "inputs": {"pixels": {"dtype": "float32", "shape": [-1, 784]}},
            "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 10]}},
        },
    },
}


def manifest(**spec_changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(MNIST)
    for dotted, value in spec_changes.items():
        node = out["spec"]
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def condition(md: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for c in ((md or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    return None


async def scenario_create_becomes_ready(kube: KubeEnv, timeout_s: float = 30) -> None:
    await kube.apply_md(MNIST)
    dep_path = kube.path("apps/v1", "Deployment", "mnist-stable")
    dep = await eventually(
        lambda: kube.client.get(dep_path), timeout_s=timeout_s, what="stable Deployment"
    )
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # A real API server answers resource quantities as strings.
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert "--model_name=mnist" in container["args"]
    owner = dep["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == (KIND, "mnist", True)
    assert await kube.client.get(kube.path("v1", "Service", "mnist")) is not None
    for svc in ("mnist-stable", "mnist-canary"):  # the replicas router needs no track Services
        assert await kube.client.get(kube.path("v1", "Service", svc)) is None, svc
    cm = await kube.client.get(kube.path("v1", "ConfigMap", "mnist-tfserving-monitoring"))
    assert cm is not None and "monitoring.config" in cm["data"]

    md = await kube.get_md("mnist")
    assert md is not None
    await kube.mark_ready("mnist-stable")

    async def ready() -> dict[str, Any] | None:
        got = await kube.get_md("mnist")
        c = condition(got, "Ready")
        return got if c and c["status"] == "True" else None

    got = await eventually(ready, timeout_s=timeout_s, what="Ready=True")
    status = got["status"]
    assert status["phase"] == "Promoted"
    assert status["stableVersion"] == "1"
    assert condition(got, "Ready")["reason"] == "Available"  # type: ignore[index]
    assert status["observedGeneration"] == got["metadata"].get("generation", 1)


async def scenario_invalid_spec_creates_nothing(kube: KubeEnv, timeout_s: float = 30) -> None:
    bad = manifest(serving__gpu={"count": -1})
    del bad["spec"]["model"]["uri"]
    if kube.backend != "kmock":
        # A real API server enforces the CRD's schema: the object never reaches the operator.
        with pytest.raises(KubeAPIError) as rejected:
            await kube.apply_md(bad)
        assert rejected.value.status == 422, rejected.value
        assert "spec.model.uri" in str(rejected.value), rejected.value
        assert "spec.serving.gpu.count" in str(rejected.value), rejected.value
        assert await kube.get_md("mnist") is None
        assert await kube.client.list(kube.path("apps/v1", "Deployment")) == []
        return
    # KMock has no CRD schema: the operator must judge on its own.
    await kube.apply_md(bad)

    async def invalid() -> dict[str, Any] | None:
        c = condition(await kube.get_md("mnist"), "Ready")
        return c if c and c["reason"] == "InvalidSpec" else None

    c = await eventually(invalid, timeout_s=timeout_s, what="InvalidSpec condition")
    assert c["status"] == "False"
    assert "spec.model.uri" in c["message"] and "spec.serving.gpu.count" in c["message"]
    deps = await kube.client.list(kube.path("apps/v1", "Deployment"))
    assert deps == []
    md = await kube.get_md("mnist")
    assert md is not None and md["status"]["phase"] == "Failed"


async def scenario_version_update_changes_deployment(kube: KubeEnv, timeout_s: float = 30) -> None:
    """A new version starts a canary Deployment that the user-facing Service does not select."""
    await scenario_create_becomes_ready(kube, timeout_s)
    await kube.apply_md(manifest(model__version="2"))
    canary_path = kube.path("apps/v1", "Deployment", "mnist-canary")
    canary = await eventually(
        lambda: kube.client.get(canary_path), timeout_s=timeout_s, what="canary Deployment"
    )
    args = canary["spec"]["template"]["spec"]["containers"][0]["args"]
    served = parse_resource(manifest(model__version="2")).model
    assert f"--model_config_file=/etc/tensorgate/{models_config_key(served)}" in args
    assert canary["spec"]["template"]["metadata"]["labels"]["tensorgate.dev/version"] == "2"
    svc = await kube.client.get(kube.path("v1", "Service", "mnist"))
    assert svc is not None and svc["spec"]["selector"]["tensorgate.dev/track"] == "stable"
    stable = await kube.client.get(kube.path("apps/v1", "Deployment", "mnist-stable"))
    assert stable is not None
    assert stable["spec"]["template"]["metadata"]["labels"]["tensorgate.dev/version"] == "1"
