"""Manifests for TF Serving: pure functions of the resource."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tensorgate.api.spec import ModelRef, parse_resource
from tensorgate.platform.kubernetes import manifests as m
from tests.unit.api.test_crd_table import BASE


def body(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["metadata"]["uid"] = "0000-uid"
    doc["spec"].update(spec)
    return doc


def pod_of(doc: dict[str, Any], track: m.Track = "stable") -> dict[str, Any]:
    spec = parse_resource(doc)
    dep = m.deployment(doc, spec, track)
    pod: dict[str, Any] = dep["spec"]["template"]["spec"]
    return pod


def test_gpu_model_requests_gpu_and_tolerates_taint() -> None:
    pod = pod_of(body())
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_cpu_model_has_no_gpu_request_or_toleration() -> None:
    pod = pod_of(body(serving={"gpu": {"count": 0}, "resources": {"requests": {"cpu": "1"}}}))
    assert "tolerations" not in pod
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "1"}}


def test_custom_gpu_resource_and_passthrough_fields() -> None:
    pod = pod_of(
        body(
            serving={
                "gpu": {"count": 2, "resourceName": "amd.com/gpu"},
                "nodeSelector": {"nvidia.com/gpu.product": "A100"},
                "tolerations": [
                    {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
                ],
                "affinity": {"nodeAffinity": {"x": 1}},
                "runtimeClassName": "nvidia",
            }
        )
    )
    assert pod["containers"][0]["resources"]["limits"] == {"amd.com/gpu": 2}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "A100"}
    assert pod["affinity"] == {"nodeAffinity": {"x": 1}}
    assert pod["runtimeClassName"] == "nvidia"
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "dedicated"]


def test_tf_serving_args_ports_probe_and_pinned_version() -> None:
    doc = body()
    container = pod_of(doc)["containers"][0]
    args = container["args"]
    assert "--model_name=mnist" in args
    assert "--model_base_path=gs://bucket/models/mnist" in args
    assert "--rest_api_port=8501" in args and "--port=8500" in args
    assert "--monitoring_config_file=/etc/tensorgate/monitoring.config" in args
    served = ModelRef(name="mnist", version="2", uri="gs://bucket/models/mnist")
    assert f"--model_config_file=/etc/tensorgate/{m.models_config_key(served)}" in args
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/mnist/versions/2"
    cm = m.serving_config_map(doc, [served])
    assert "/monitoring/prometheus/metrics" in cm["data"]["monitoring.config"]
    assert "versions: 2" in cm["data"][m.models_config_key(served)]


def test_model_config_key_follows_what_is_loaded_not_the_version_string() -> None:
    """Same version, another URI: another config key, so a stable pod's file never changes."""
    a = ModelRef(name="mnist", version="2", uri="gs://bucket/models/mnist")
    b = ModelRef(name="mnist", version="2", uri="gs://bucket/models/mnist-broken")
    assert m.models_config_key(a) != m.models_config_key(b)
    assert m.models_config_key(a) == m.models_config_key(a.model_copy())


@pytest.mark.parametrize(
    ("uri", "base_path", "claim"),
    [
        ("pvc://models/churn", "/models/pvc/churn", "models"),
        ("pvc://models", "/models/pvc", "models"),
        ("s3://b/m", "s3://b/m", None),
        ("/models/m", "/models/m", None),
    ],
)
def test_model_uri_schemes(uri: str, base_path: str, claim: str | None) -> None:
    doc = body(model={"name": "mnist", "version": "2", "uri": uri})
    pod = pod_of(doc)
    assert f"--model_base_path={base_path}" in pod["containers"][0]["args"]
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ([claim] if claim else [])


def test_credentials_secret_becomes_env() -> None:
    container = pod_of(body(serving={"credentialsSecret": "s3-creds"}))["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]


def test_restricted_pod_security() -> None:
    pod = pod_of(body())
    sc = pod["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_labels_owner_and_selectors() -> None:
    doc = body()
    spec = parse_resource(doc)
    dep = m.deployment(doc, spec, "canary")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["tensorgate.dev/model"] == "mnist" and labels["tensorgate.dev/track"] == "canary"
    assert labels["app.kubernetes.io/managed-by"] == "tensorgate"
    sel = dep["spec"]["selector"]["matchLabels"]
    assert all(labels[k] == v for k, v in sel.items())
    owner = dep["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "0000-uid" and owner["controller"] is True
    users = m.service(doc)
    assert users["spec"]["selector"]["tensorgate.dev/track"] == "stable"


def test_http_route_weights() -> None:
    doc = body(traffic={"router": "gateway-api", "parentRefs": [{"name": "gw"}]})
    route = m.http_route(doc, parse_resource(doc), 25)
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("mnist-stable", 75), ("mnist-canary", 25)]
