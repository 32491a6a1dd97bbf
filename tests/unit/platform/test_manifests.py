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
    assert container["readinessProbe"]["grpc"] == {"port": 8500}
    assert "--rest_api_timeout_in_ms=30000" in args
    assert "--enable_grpc_healthcheck_service=true" in args
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
        ("s3://b/m", "/models/s3", None),
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


def test_credentials_secret_becomes_env_for_other_uris() -> None:
    doc = body(
        serving={"credentialsSecret": "creds"}, model={"name": "m", "version": "2", "uri": "/m"}
    )
    container = pod_of(doc)["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "creds"}}]


def test_gcs_key_file_is_mounted_and_named_by_path() -> None:
    """GOOGLE_APPLICATION_CREDENTIALS must be a key file's path (TF Serving's gs:// support
    reads it as one, tensorflow/serving FACTS: model_servers/server.cc uses TF's GCS
    filesystem); the Secret's key is mounted read-only and the variable points at it."""
    doc = body(serving={"credentialsSecret": "gcs", "gcsKeyFileKey": "sa.json"})
    pod = pod_of(doc)
    container = pod["containers"][0]
    assert container["env"] == [
        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/google/sa.json"}
    ]
    assert "envFrom" not in container
    mount = next(v for v in container["volumeMounts"] if v["name"] == "gcs-key")
    assert mount == {"name": "gcs-key", "mountPath": "/var/secrets/google", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "gcs-key")
    assert volume["secret"] == {
        "secretName": "gcs",
        "items": [{"key": "sa.json", "path": "sa.json"}],
    }


def test_s3_model_is_fetched_by_a_pinned_init_container() -> None:
    """TF Serving 2.7+ ships no S3 filesystem (tensorflow/serving#1963): an init container
    with a pinned, configurable image copies the pinned version into an emptyDir, with the
    Secret's credentials; TF Serving's config points at the local copy."""
    doc = body(
        model={"name": "m", "version": "4", "uri": "s3://bucket/models/m"},
        serving={"credentialsSecret": "aws", "s3FetchImage": "registry.local/aws-cli:2.17.0"},
    )
    pod = pod_of(doc)
    (fetch,) = pod["initContainers"]
    assert fetch["image"] == "registry.local/aws-cli:2.17.0"
    assert fetch["command"][-2:] == ["s3://bucket/models/m/4", "/models/s3/4"]
    assert fetch["envFrom"] == [{"secretRef": {"name": "aws"}}]
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]
    assert "envFrom" not in pod["containers"][0]
    config = m.models_config(ModelRef(name="m", version="4", uri="s3://bucket/models/m"))
    assert 'base_path: "/models/s3"' in config


@pytest.mark.parametrize(("timeout", "threshold"), [("30m", 180), ("90s", 9), ("2h", 720)])
def test_startup_probe_covers_startup_timeout_before_liveness(timeout: str, threshold: int) -> None:
    """TF Serving opens no port until every model loaded, with no time limit
    (tensorflow/serving model_servers/server.cc ServerCore::Create): the startupProbe gives
    serving.startupTimeout, and liveness (which Kubernetes holds until startup succeeds) has
    no initial delay of its own to fire early."""
    container = pod_of(body(serving={"startupTimeout": timeout}))["containers"][0]
    startup = container["startupProbe"]
    assert startup["grpc"] == {"port": 8500}
    assert startup["periodSeconds"] * startup["failureThreshold"] == threshold * 10
    assert "initialDelaySeconds" not in container["livenessProbe"]


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
