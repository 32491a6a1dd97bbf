"""The gate report ConfigMap: its manifest (owner, labels) and ``publish_report`` against an
API server answered by ``httpx.MockTransport`` (create, then overwrite on 409)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import kopf
import pytest

from tensorgate.errors import ConfigError
from tensorgate.platform.kubernetes import manifests as m
from tensorgate.platform.kubernetes.client import KubeClient
from tensorgate.platform.kubernetes.platform import MAX_REPORT_BYTES, KubernetesPlatform

BODY = {
    "apiVersion": "tensorgate.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "mnist", "namespace": "ml", "uid": "1234-uid"},
}
COLLECTION = "/api/v1/namespaces/ml/configmaps"


def test_gate_report_config_map_is_owned_by_the_model_deployment() -> None:
    cm = m.gate_report_config_map(BODY, "<html>ok</html>")
    meta = cm["metadata"]
    assert meta["name"] == "mnist-gate-report" and meta["namespace"] == "ml"
    (owner,) = meta["ownerReferences"]
    assert owner["kind"] == "ModelDeployment" and owner["uid"] == "1234-uid"
    assert owner["controller"] is True
    assert meta["labels"][m.LABEL_MODEL] == "mnist"
    assert meta["labels"]["app.kubernetes.io/component"] == "gate-report"
    assert cm["data"] == {"report.html": "<html>ok</html>"}


class API:
    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.requests: list[tuple[str, str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        if request.method == "POST" and self.exists:
            return httpx.Response(409, json={"message": "already exists"})
        return httpx.Response(201 if request.method == "POST" else 200, json=body or {})


def platform(api: API) -> KubernetesPlatform:
    conn = kopf.ConnectionInfo(server="http://127.0.0.1:1", insecure=True)
    return KubernetesPlatform(KubeClient(conn, retries=0, transport=httpx.MockTransport(api)))


async def test_publish_report_creates_the_config_map() -> None:
    api = API(exists=False)
    name = await platform(api).publish_report(BODY, "<html>page</html>")
    assert name == "mnist-gate-report"
    ((method, path, body),) = api.requests
    assert (method, path) == ("POST", COLLECTION)
    assert body["data"]["report.html"] == "<html>page</html>"
    # no last-applied copy of a page that may be 512 KiB (annotations hold 256 KiB)
    assert "annotations" not in body["metadata"]


async def test_publish_report_overwrites_an_existing_page() -> None:
    api = API(exists=True)
    await platform(api).publish_report(BODY, "<html>new</html>")
    assert [(r[0], r[1]) for r in api.requests] == [
        ("POST", COLLECTION),
        ("PATCH", f"{COLLECTION}/mnist-gate-report"),
    ]
    assert api.requests[1][2]["data"] == {"report.html": "<html>new</html>"}


async def test_publish_report_refuses_a_page_over_a_config_map() -> None:
    api = API(exists=False)
    with pytest.raises(ConfigError, match="gate report page"):
        await platform(api).publish_report(BODY, "x" * (MAX_REPORT_BYTES + 1))
    assert api.requests == []
