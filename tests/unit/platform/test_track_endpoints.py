"""A track's endpoints are the servers of the revision its Deployment runs now.

Seen in benchmarks/time_to_decision.py: a good version applied right after a rollback was
smoke-tested against the previous canary's pod (deleted Deployment, pod not yet collected by
the garbage collector, same labels), answered "Servable not found" and was rolled back.
"""

from __future__ import annotations

from typing import Any

import httpx
import kopf

from tensorgate.platform.kubernetes import manifests as m
from tensorgate.platform.kubernetes.client import KubeClient
from tensorgate.platform.kubernetes.platform import KubernetesPlatform

SLICE_LABELS = {"kubernetes.io/service-name": m.track_service_name("mnist", "canary")}
BODY = {"metadata": {"name": "mnist", "namespace": "ml", "uid": "u1"}}
NEW, OLD = "rev-new", "rev-old"


def _pod(name: str, ip: str, revision: str, *, deleting: bool = False) -> dict[str, Any]:
    labels = {
        **m.selector_labels("mnist", "canary"),
        "app.kubernetes.io/managed-by": m.common_labels("mnist")["app.kubernetes.io/managed-by"],
    }
    meta: dict[str, Any] = {
        "name": name,
        "labels": labels,
        "annotations": {m.ANNOTATION_REVISION: revision},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {
            "containers": [{"name": "serving", "ports": [{"name": "grpc", "containerPort": 8500}]}]
        },
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


def _platform(pods: list[dict[str, Any]], slices: list[dict[str, Any]]) -> KubernetesPlatform:
    deployment = {
        "metadata": {"name": "mnist-canary"},
        "spec": {"template": {"metadata": {"annotations": {m.ANNOTATION_REVISION: NEW}}}},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/deployments/mnist-canary"):
            return httpx.Response(200, json=deployment)
        if path.endswith("/pods"):
            return httpx.Response(200, json={"metadata": {}, "items": pods})
        if path.endswith("/endpointslices"):
            return httpx.Response(200, json={"metadata": {}, "items": slices})
        return httpx.Response(404, json={"message": "not found"})

    conn = kopf.ConnectionInfo(server="http://127.0.0.1:1", insecure=True)
    client = KubeClient(conn, retries=0, transport=httpx.MockTransport(answer))
    return KubernetesPlatform(client)


PODS = [
    _pod("mnist-canary-new", "127.0.0.2", NEW),
    _pod("mnist-canary-old", "127.0.0.3", OLD),
    _pod("mnist-canary-going", "127.0.0.4", NEW, deleting=True),
]


async def test_ready_pods_of_an_earlier_deployment_are_not_endpoints() -> None:
    found = await _platform(PODS, []).grpc_endpoints(BODY, "canary")
    assert found == ["127.0.0.2:8500"]


async def test_endpoint_slices_leave_out_pods_of_an_earlier_revision() -> None:
    endpoints = [
        {
            "addresses": [p["status"]["podIP"]],
            "targetRef": {"kind": "Pod", "name": p["metadata"]["name"]},
        }
        for p in PODS
    ]
    slices = [
        {
            "metadata": {"labels": SLICE_LABELS},
            "endpoints": endpoints,
            "ports": [{"name": "grpc", "port": 8500}],
        }
    ]
    found = await _platform(PODS, slices).grpc_endpoints(BODY, "canary")
    assert found == ["127.0.0.2:8500"]


async def test_endpoints_published_without_a_pod_reference_are_kept() -> None:
    slices = [
        {
            "metadata": {"labels": SLICE_LABELS},
            "endpoints": [{"addresses": ["127.0.0.9"], "conditions": {"ready": True}}],
            "ports": [{"name": "grpc", "port": 9000}],
        }
    ]
    assert await _platform([], slices).grpc_endpoints(BODY, "canary") == ["127.0.0.9:9000"]
