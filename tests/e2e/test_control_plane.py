"""What only a real control plane shows: admission by the CRD's schema and CEL rules,
generation bookkeeping and the status subresource, the scheduler, the garbage collector and
RBAC on the operator's own ServiceAccount token."""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tensorgate.api.spec import GROUP, PLURAL, VERSION
from tensorgate.errors import KubeAPIError
from tensorgate.platform.kubernetes.client import KubeClient
from tests.e2e.conftest import ROOT, Cluster, Identity
from tests.helpers import eventually
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.scenarios import condition, manifest
from tests.unit.api.test_crd_table import CASES

pytestmark = pytest.mark.cluster

# A model base path nothing serves: its pods schedule and run but never become Ready (the pod
# player finds no such folder, as TF Serving would fail to load it), and no TF process starts.
UNSERVED = "/nonexistent/models/mnist"
A100 = "NVIDIA-A100-SXM4-40GB"


def _md_collection(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"


def md(name: str, **spec_changes: Any) -> dict[str, Any]:
    out = manifest(model__uri=UNSERVED, **spec_changes)
    out["metadata"] = {"name": name}
    return out


async def _pods(kube: KubeEnv, name: str) -> list[dict[str, Any]]:
    return await kube.client.list(kube.path("v1", "Pod"), f"tensorgate.dev/model={name}")


async def _wait(probe: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 60) -> Any:
    return await eventually(probe, timeout_s=timeout_s, every_s=0.2, what=what)


# -- (a) admission: the CRD's structural schema and CEL rules, on the real API server ---------


async def test_api_server_admits_exactly_the_crd_table(kube: KubeEnv) -> None:
    """Every case of the foundation's table, as a dry-run create: good ones admitted, bad ones
    refused with the field named (schema errors and x-kubernetes-validations alike)."""
    wrong: list[str] = []
    for case_id, doc, bad_field in CASES:
        body = copy.deepcopy(doc)
        body["metadata"]["namespace"] = kube.namespace
        try:
            await kube.client.request(
                "POST",
                _md_collection(kube.namespace),
                body=body,
                params={"dryRun": "All", "fieldValidation": "Strict"},
            )
        except KubeAPIError as exc:
            if bad_field is None:
                wrong.append(f"{case_id}: refused a good manifest: {exc}")
            elif exc.status not in (400, 422) or bad_field not in str(exc):
                wrong.append(f"{case_id}: want 422 naming {bad_field}, got {exc}")
            elif exc.status == 400 and case_id != "unknown-field":
                wrong.append(f"{case_id}: 400 is only for strict decoding, got {exc}")
        else:
            if bad_field is not None:
                wrong.append(f"{case_id}: admitted, but {bad_field} is bad")
    assert not wrong, "\n".join(wrong)
    assert await kube.client.list(_md_collection(kube.namespace)) == []  # dry runs store nothing


# -- (b) generation, observedGeneration and the status subresource ----------------------------


async def test_generation_moves_with_spec_and_status_goes_through_subresource(
    kube: KubeEnv, operator: object, cluster: Cluster, operator_identity: Identity
) -> None:
    await kube.apply_md(md("gen", serving__gpu={"count": 0}))
    path = kube.path(f"{GROUP}/{VERSION}", "ModelDeployment", "gen")

    async def observed(generation: int) -> dict[str, Any] | None:
        got = await kube.get_md("gen")
        status = (got or {}).get("status") or {}
        ready = condition(got, "Ready")
        if status.get("observedGeneration") == generation and ready:
            return got if ready.get("observedGeneration") == generation else None
        return None

    first = await _wait(lambda: observed(1), "observedGeneration 1")
    assert first["metadata"]["generation"] == 1
    assert first["status"]["phase"] == "Deploying"  # the pods never get Ready (UNSERVED)

    # The operator wrote status several times by now; none of it moved the generation.
    # Through the status subresource spec changes are dropped, and through the main resource
    # status changes are dropped: the two halves are separate.
    await kube.client.patch(f"{path}/status", {"spec": {"serving": {"replicas": 3}}})
    await kube.client.patch(path, {"status": {"phase": "Promoted"}})
    await kube.client.patch(path, {"metadata": {"labels": {"team": "vision"}}})
    after = await kube.get_md("gen")
    assert after is not None
    assert after["metadata"]["generation"] == 1
    assert after["spec"]["serving"]["replicas"] == 1
    assert after["status"]["phase"] != "Promoted"

    # A spec change bumps the generation and the operator catches up with it.
    await kube.client.patch(path, {"spec": {"serving": {"replicas": 2}}})
    second = await _wait(lambda: observed(2), "observedGeneration 2")
    assert second["metadata"]["generation"] == 2
    dep = await kube.client.get(kube.path("apps/v1", "Deployment", "gen-stable"))
    assert dep is not None and dep["spec"]["replicas"] == 2

    # The operator (its ServiceAccount) wrote status only through /status (audit log).
    audit = _audit(cluster, operator_identity.user, kube.namespace)
    if audit is not None:
        writes = [
            e
            for e in audit
            if e["verb"] in {"patch", "update"} and e["objectRef"].get("resource") == PLURAL
        ]
        assert any(e["objectRef"].get("subresource") == "status" for e in writes), writes
        # Status is written with its resourceVersion: the test's own writes above make some
        # of the operator's writes conflict (409), which it answers by reading again.
        codes = [e["responseStatus"]["code"] for e in writes]
        assert all(code < 400 or code == 409 for code in codes), writes
        assert codes[-1] < 400, writes


def _audit(cluster: Cluster, user: str, namespace: str) -> list[dict[str, Any]] | None:
    """The API server's audit events of ``user`` in ``namespace`` (local test cluster only)."""
    log = ROOT / ".cluster" / "audit.log"
    if not cluster.is_kwok or not log.exists() or cluster.kubeconfig.parent != log.parent:
        return None
    events = []
    for line in Path(log).read_text().splitlines():
        if user not in line or namespace not in line:
            continue
        event = json.loads(line)
        ref = event.get("objectRef") or {}
        if (
            event["user"]["username"] == user
            and ref.get("namespace") == namespace
            and event.get("stage") == "ResponseComplete"
        ):
            events.append(event)
    assert events, f"no audit events of {user} in {namespace} in {log}"
    return events


# -- (c) the scheduler -------------------------------------------------------------------------


async def test_scheduler_places_gpu_and_cpu_models_and_surfaces_unschedulable(
    kube: KubeEnv, operator: object
) -> None:
    await kube.apply_md(
        md(
            "gpu-pinned",
            serving__replicas=2,
            serving__nodeSelector={"nvidia.com/gpu.product": A100},
        )
    )
    await kube.apply_md(md("gpu-any"))
    await kube.apply_md(md("cpu-model", serving__replicas=2, serving__gpu={"count": 0}))
    await kube.apply_md(md("too-many-gpus", serving__gpu={"count": 8}))
    await kube.apply_md(
        md("other-gpu", serving__nodeSelector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})
    )

    async def placed(name: str, count: int) -> list[str] | None:
        nodes = [(p.get("spec") or {}).get("nodeName") for p in await _pods(kube, name)]
        return nodes if len(nodes) == count and all(nodes) else None

    for name, count, prefix in (("gpu-pinned", 2, "gpu-node-"), ("gpu-any", 1, "gpu-node-")):
        nodes = await _wait(lambda n=name, c=count: placed(n, c), f"{name} scheduled")
        assert all(n.startswith(prefix) for n in nodes), (name, nodes)
    nodes = await _wait(lambda: placed("cpu-model", 2), "cpu-model scheduled")
    assert all(n.startswith("cpu-node-") for n in nodes), nodes

    async def unschedulable(name: str) -> dict[str, Any] | None:
        ready = condition(await kube.get_md(name), "Ready")
        return ready if ready and ready["reason"] == "Unschedulable" else None

    too_many = await _wait(lambda: unschedulable("too-many-gpus"), "too-many-gpus Unschedulable")
    assert too_many["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in too_many["message"], too_many
    pods = await _pods(kube, "too-many-gpus")
    assert pods and not (pods[0].get("spec") or {}).get("nodeName")
    assert (pods[0].get("status") or {}).get("phase") == "Pending"

    other = await _wait(lambda: unschedulable("other-gpu"), "other-gpu Unschedulable")
    assert "node affinity/selector" in other["message"], other
    got = await kube.get_md("too-many-gpus")
    assert got is not None and got["status"]["phase"] == "Deploying"


# -- (e) the garbage collector -----------------------------------------------------------------

OWNED = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Pod"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
)


async def test_deleting_the_model_garbage_collects_what_it_owned(
    kube: KubeEnv, operator: object, cluster: Cluster, operator_identity: Identity
) -> None:
    await kube.apply_md(md("gc", serving__gpu={"count": 0}))
    selector = "tensorgate.dev/model=gc"

    async def children() -> dict[str, int]:
        found = {}
        for api, kind in OWNED:
            if kind == "EndpointSlice":  # labelled by the EndpointSlice controller, not us
                items = [
                    s
                    for s in await kube.client.list(kube.path(api, kind))
                    if s["metadata"]["labels"]
                    .get("kubernetes.io/service-name", "")
                    .startswith("gc")
                ]
            else:
                items = await kube.client.list(kube.path(api, kind), selector)
            found[kind] = len(items)
        return found

    async def all_made() -> dict[str, int] | None:
        found = await children()
        return found if all(found.values()) else None

    made = await _wait(all_made, "the model's Deployment, Services, ConfigMap, pods, slices")
    assert made["Service"] == 1, made  # the replicas router needs only the user-facing one
    rs = await kube.client.request(
        "GET",
        f"/apis/apps/v1/namespaces/{kube.namespace}/replicasets",
        params={"labelSelector": selector},
    )
    assert rs is not None and rs["items"], "the Deployment controller made no ReplicaSet"

    # The operator (not the test's admin) created them: the audit log names its ServiceAccount.
    audit = _audit(cluster, operator_identity.user, kube.namespace)
    if audit is not None:
        created = {e["objectRef"]["resource"] for e in audit if e["verb"] == "create"}
        assert {"deployments", "services", "configmaps"} <= created, created

    # kubectl's default: background propagation; kopf removes its finalizer, then the GC works.
    await kube.client.delete(kube.path(f"{GROUP}/{VERSION}", "ModelDeployment", "gc"))
    await _wait(
        lambda: _gone(kube.client, kube.path(f"{GROUP}/{VERSION}", "ModelDeployment", "gc")),
        "CR gone",
    )

    async def nothing_left() -> bool:
        return not any((await children()).values())

    await _wait(nothing_left, "the garbage collector to delete every owned object", 90)


async def _gone(client: KubeClient, path: str) -> bool:
    return await client.get(path) is None


# -- (f) RBAC: the operator's token has the chart's grants and no more --------------------------


async def test_operator_token_is_bound_by_the_chart_rbac(
    kube: KubeEnv, cluster: Cluster, operator_identity: Identity
) -> None:
    client = KubeClient(operator_identity.connection, timeout_s=10, retries=3)
    ns = kube.namespace
    try:
        # What the chart grants works...
        assert await client.list(_md_collection(ns)) == []
        assert await client.list(f"/apis/{GROUP}/{VERSION}/{PLURAL}") is not None
        assert await client.list(f"/api/v1/namespaces/{ns}/pods") == []
        # ...and nothing else does.
        denied = {
            "list secrets": f"/api/v1/namespaces/{ns}/secrets",
            "list secrets cluster-wide": "/api/v1/secrets",
            "get the default ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts/default",
            "list nodes": "/api/v1/nodes",
            "list configmaps": f"/api/v1/namespaces/{ns}/configmaps",
            "list CRDs": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        }
        for what, path in denied.items():
            with pytest.raises(KubeAPIError) as err:
                await client.request("GET", path)
            assert err.value.status == 403, (what, err.value)
            assert operator_identity.user in str(err.value), (what, err.value)
        with pytest.raises(KubeAPIError) as err:
            await client.request("DELETE", f"/api/v1/namespaces/{ns}")
        assert err.value.status == 403
    finally:
        await client.aclose()
    # kubectl agrees: the same identity, asked by impersonation.
    can = cluster.kubectl(
        "auth", "can-i", "list", "secrets", f"--as={operator_identity.user}", "-A", check=False
    )
    assert can.stdout.strip() == "no", can
    can = cluster.kubectl(
        "auth",
        "can-i",
        "patch",
        f"{PLURAL}.{GROUP}",
        "--subresource=status",
        f"--as={operator_identity.user}",
        "-n",
        ns,
        check=False,
    )
    assert can.stdout.strip() == "yes", can
