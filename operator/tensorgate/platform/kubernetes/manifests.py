"""The Kubernetes objects for a ModelDeployment, as pure functions of the resource.

One Deployment per track (``stable``, ``canary``), one Service selecting every serving pod of
the model (the ``replicas`` router realises weights with replica counts), one Service per
track (for the gate and for weighted routers), and the TF Serving monitoring ConfigMap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from tensorgate.api.spec import (
    API_VERSION,
    KIND,
    ModelDeploymentSpec,
    ModelRef,
    parse_duration_s,
    parse_resource,
)
from tensorgate.engine.revision import model_key, rollout_revision

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")

REST_PORT = 8501
GRPC_PORT = 8500
REST_API_TIMEOUT_MS = 30000  # set explicitly: TF Serving cuts REST requests here (504)
METRICS_PATH = "/monitoring/prometheus/metrics"
MONITORING_FILE = "monitoring.config"
MONITORING_DIR = "/etc/tensorgate"
SERVING_NAME = "tfserving"
LABEL_MODEL = "tensorgate.dev/model"
GATE_REPORT_KEY = "report.html"
LABEL_TRACK = "tensorgate.dev/track"
LABEL_VERSION = "tensorgate.dev/version"
ANNOTATION_REVISION = "tensorgate.dev/revision"
GPU_TAINT_KEY = "nvidia.com/gpu"
RUN_AS_USER = 1000
S3_MOUNT = "/models/s3"
GCS_KEY_DIR = "/var/secrets/google"
STARTUP_PERIOD_S = 10

MONITORING_CONFIG = f'prometheus_config {{\n  enable: true,\n  path: "{METRICS_PATH}"\n}}\n'


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ownerReference that makes the garbage collector delete children with the CR."""
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(name: str, track: Track | None = None) -> dict[str, str]:
    """Labels a Service or Deployment selects serving pods by."""
    labels = {"app.kubernetes.io/name": SERVING_NAME, LABEL_MODEL: name}
    if track is not None:
        labels[LABEL_TRACK] = track
    return labels


def common_labels(name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": SERVING_NAME,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "tensorgate",
        "app.kubernetes.io/managed-by": "tensorgate",
        LABEL_MODEL: name,
    }


def deployment_name(name: str, track: Track) -> str:
    return f"{name}-{track}"


def track_service_name(name: str, track: Track) -> str:
    return f"{name}-{track}"


def config_map_name(name: str) -> str:
    return f"{name}-tfserving-monitoring"


def gate_report_name(name: str) -> str:
    return f"{name}-gate-report"


def gate_report_config_map(body: Mapping[str, Any], html: str) -> dict[str, Any]:
    """The ConfigMap holding the latest gate report page (``report.html``) of a
    ModelDeployment; owned by it, so the garbage collector deletes it with the object."""
    name = body["metadata"]["name"]
    labels = {
        "app.kubernetes.io/part-of": "tensorgate",
        "app.kubernetes.io/managed-by": "tensorgate",
        "app.kubernetes.io/component": "gate-report",
        LABEL_MODEL: name,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(body, gate_report_name(name), labels),
        "data": {GATE_REPORT_KEY: html},
    }


def _meta(body: Mapping[str, Any], name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": body["metadata"].get("namespace", "default"),
        "labels": labels,
        "ownerReferences": [owner_reference(body)],
    }


def _model_path(model: ModelRef) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The --model_base_path for a URI, plus the volumes and mounts it needs.

    ``s3://``: TF Serving 2.7+ has no S3 filesystem ("File system scheme 's3' not
    implemented"), so an init container (``s3_fetch_container``) copies the pinned version
    into an emptyDir and TF Serving serves that local copy."""
    if model.uri.startswith("s3://"):
        volume = {"name": "model", "emptyDir": {}}
        mounts = [{"name": "model", "mountPath": S3_MOUNT, "readOnly": True}]
        return S3_MOUNT, [volume], mounts
    if model.uri.startswith("pvc://"):
        claim, _, sub = model.uri[len("pvc://") :].partition("/")
        mount = "/models/pvc"
        volume = {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        mounts = [{"name": "model", "mountPath": mount, "readOnly": True}]
        return f"{mount}/{sub}".rstrip("/"), [volume], mounts
    return model.uri, [], []


def _tolerations(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    user = [t.to_dict() for t in spec.serving.tolerations]
    if spec.serving.gpu.count > 0 and not any(t.get("key") == GPU_TAINT_KEY for t in user):
        user.insert(0, {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"})
    return user


def _resources(spec: ModelDeploymentSpec) -> dict[str, Any]:
    requests = dict(spec.serving.resources.requests)
    limits = dict(spec.serving.resources.limits)
    gpu = spec.serving.gpu
    if gpu.count > 0:
        limits[gpu.resource_name] = gpu.count
        requests[gpu.resource_name] = gpu.count
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS_USER,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def probes(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """Startup, readiness and liveness probes of the TF Serving container.

    TF Serving opens no port until every model has loaded, with no time limit
    (``model_servers/server.cc``), so a startupProbe holds liveness off for
    ``serving.startupTimeout``. All three ask gRPC (``--enable_grpc_healthcheck_service``):
    a REST probe would count in ``request_count`` and dilute the error rate
    (``http_server.cc``); the gRPC health service is counted nowhere."""
    startup_s = parse_duration_s(spec.serving.startup_timeout)
    return {
        "startupProbe": {
            "grpc": {"port": GRPC_PORT},
            "periodSeconds": STARTUP_PERIOD_S,
            "timeoutSeconds": 2,
            "failureThreshold": max(1, math.ceil(startup_s / STARTUP_PERIOD_S)),
        },
        "readinessProbe": {
            "grpc": {"port": GRPC_PORT},
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "tcpSocket": {"port": "grpc"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }


def credentials(
    spec: ModelDeploymentSpec, model: ModelRef
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """How the serving container gets the model store's credentials: (container fields,
    pod volumes). gs://: the Secret's key file is mounted and GOOGLE_APPLICATION_CREDENTIALS
    points at it (it must be a path); s3://: the init container gets the Secret instead;
    other URIs: the Secret's keys as environment."""
    secret = spec.serving.credentials_secret
    if not secret or model.uri.startswith("s3://"):
        return {}, []
    if model.uri.startswith("gs://"):
        key = spec.serving.gcs_key_file_key
        volume = {
            "name": "gcs-key",
            "secret": {"secretName": secret, "items": [{"key": key, "path": key}]},
        }
        fields = {
            "env": [{"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_KEY_DIR}/{key}"}],
            "volumeMounts": [{"name": "gcs-key", "mountPath": GCS_KEY_DIR, "readOnly": True}],
        }
        return fields, [volume]
    return {"envFrom": [{"secretRef": {"name": secret}}]}, []


def s3_fetch_container(spec: ModelDeploymentSpec, model: ModelRef) -> dict[str, Any] | None:
    """The init container copying an s3:// model version into the pod (None otherwise)."""
    if not model.uri.startswith("s3://"):
        return None
    source = f"{model.uri.rstrip('/')}/{model.version}"
    container: dict[str, Any] = {
        "name": "fetch-model",
        "image": spec.serving.s3_fetch_image,
        "command": [
            "aws",
            "s3",
            "sync",
            "--only-show-errors",
            source,
            f"{S3_MOUNT}/{model.version}",
        ],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [
            {"name": "model", "mountPath": S3_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": dict(_SECURITY_CONTEXT),
    }
    if spec.serving.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.serving.credentials_secret}}]
    return container


def serving_container(spec: ModelDeploymentSpec, model: ModelRef) -> dict[str, Any]:
    base_path, _, mounts = _model_path(model)
    secret_fields, _ = credentials(spec, model)
    container: dict[str, Any] = {
        "name": SERVING_NAME,
        "image": spec.serving.image,
        "args": [
            f"--model_name={model.name}",
            f"--model_base_path={base_path}",
            f"--port={GRPC_PORT}",
            f"--rest_api_port={REST_PORT}",
            f"--monitoring_config_file={MONITORING_DIR}/{MONITORING_FILE}",
            # TF Serving serves the newest version folder by default; a track must serve
            # exactly its version, so it reads a model config that pins it (when a config file
            # is given TF Serving takes name and path from it; the two flags above stay for
            # people and tools reading the pod).
            f"--model_config_file={MONITORING_DIR}/{models_config_key(model)}",
            f"--rest_api_timeout_in_ms={REST_API_TIMEOUT_MS}",
            "--enable_grpc_healthcheck_service=true",
        ],
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"},
        ],
        **probes(spec),
        "volumeMounts": [
            {"name": "monitoring", "mountPath": MONITORING_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *mounts,
            *secret_fields.pop("volumeMounts", []),
        ],
        "securityContext": dict(_SECURITY_CONTEXT),
        **secret_fields,
    }
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    return container


def deployment(
    body: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    track: Track,
    *,
    model: ModelRef | None = None,
    replicas: int | None = None,
    revision: str | None = None,
) -> dict[str, Any]:
    """The Deployment of one track. ``model`` defaults to the spec's (the candidate), and
    ``revision`` to the spec's rollout revision (kept as the pod template's annotation)."""
    name = body["metadata"]["name"]
    model = model or spec.model
    revision = revision or rollout_revision(spec)
    _, volumes, _ = _model_path(model)
    _, secret_volumes = credentials(spec, model)
    fetch = s3_fetch_container(spec, model)
    labels = {**common_labels(name), LABEL_TRACK: track, LABEL_VERSION: model.version}
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [serving_container(spec, model)],
        "volumes": [
            {"name": "monitoring", "configMap": {"name": config_map_name(name)}},
            {"name": "tmp", "emptyDir": {}},
            *volumes,
            *secret_volumes,
        ],
        "terminationGracePeriodSeconds": 30,
    }
    if fetch is not None:
        pod_spec["initContainers"] = [fetch]
    if spec.serving.node_selector:
        pod_spec["nodeSelector"] = dict(spec.serving.node_selector)
    tolerations = _tolerations(spec)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if spec.serving.affinity:
        pod_spec["affinity"] = dict(spec.serving.affinity)
    if spec.serving.runtime_class_name:
        pod_spec["runtimeClassName"] = spec.serving.runtime_class_name
    if spec.serving.service_account_name:
        pod_spec["serviceAccountName"] = spec.serving.service_account_name
    meta = _meta(body, deployment_name(name, track), labels)
    meta["annotations"] = {ANNOTATION_REVISION: revision}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": spec.serving.replicas if replicas is None else replicas,
            "selector": {"matchLabels": selector_labels(name, track)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": spec.serving.max_surge, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {
                        ANNOTATION_REVISION: revision,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(REST_PORT),
                        "prometheus.io/path": METRICS_PATH,
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def service(body: Mapping[str, Any], track: Track | None = None) -> dict[str, Any]:
    """The model's user-facing Service or, with ``track``, the Service of one track.

    The user-facing Service starts selecting only the stable track; the ``replicas`` router
    widens it to both tracks while a canary takes traffic."""
    name = body["metadata"]["name"]
    labels = common_labels(name)
    svc_name = name if track is None else track_service_name(name, track)
    if track is not None:
        labels = {**labels, LABEL_TRACK: track}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(body, svc_name, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name, track or "stable"),
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
                {"name": "http", "port": REST_PORT, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }


def services(body: Mapping[str, Any], spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    """The Services the chosen router needs: the user-facing one always; the per-track ones
    only for gateway-api (its HTTPRoute's backends). The gate finds a track's pods without a
    Service of its own (its EndpointSlices when there is one, else the Ready pods)."""
    found = [service(body)]
    if str(spec.traffic.router) == "gateway-api":
        found += [service(body, "stable"), service(body, "canary")]
    return found


def models_config_key(model: ModelRef) -> str:
    """The ConfigMap key of ``model``'s pinned config: keyed by what it loads (name, version,
    uri), so the file a running pod reads never changes under it."""
    return f"models-{model_key(model)}.config"


def models_config(model: ModelRef) -> str:
    """TF Serving model server config that serves exactly one version.

    TF Serving parses it with protobuf's ``TextFormat`` (``util/proto_util.h``); every string
    is written as an escaped text-format literal (``"``, ``\\``, newlines and every byte
    outside printable ASCII as octal escapes), and the version as an integer, so no value can
    close its string and inject another ``config { ... }`` even if validation were bypassed.
    """

    def literal(text: str) -> str:
        out = []
        for byte in text.encode("utf-8"):
            if byte in (0x22, 0x5C):  # " and \
                out.append("\\" + chr(byte))
            elif 0x20 <= byte < 0x7F:
                out.append(chr(byte))
            else:
                out.append(f"\\{byte:03o}")
        return '"' + "".join(out) + '"'

    base_path, _, _ = _model_path(model)
    version = int(model.version)  # digits only (the spec's pattern); int() refuses the rest
    return (
        "model_config_list {\n"
        "  config {\n"
        f"    name: {literal(model.name)}\n"
        f"    base_path: {literal(base_path)}\n"
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ versions: {version} }} }}\n"
        "  }\n"
        "}\n"
    )


def http_route(body: Mapping[str, Any], spec: ModelDeploymentSpec, weight: int) -> dict[str, Any]:
    """Gateway API HTTPRoute splitting traffic between the per-track Services."""
    name = body["metadata"]["name"]
    route_spec: dict[str, Any] = {
        "parentRefs": [p.to_dict() for p in spec.traffic.parent_refs],
        "rules": [
            {
                "backendRefs": [
                    {
                        "name": track_service_name(name, "stable"),
                        "port": REST_PORT,
                        "weight": 100 - weight,
                    },
                    {
                        "name": track_service_name(name, "canary"),
                        "port": REST_PORT,
                        "weight": weight,
                    },
                ]
            }
        ],
    }
    if spec.traffic.hostnames:
        route_spec["hostnames"] = list(spec.traffic.hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(body, name, common_labels(name)),
        "spec": route_spec,
    }


def serving_config_map(body: Mapping[str, Any], models: list[ModelRef]) -> dict[str, Any]:
    """Monitoring config plus one pinned model config per version in use (stable, canary)."""
    name = body["metadata"]["name"]
    data = {MONITORING_FILE: MONITORING_CONFIG}
    data.update({models_config_key(m): models_config(m) for m in models})
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(body, config_map_name(name), common_labels(name)),
        "data": data,
    }


def stable_objects(
    body: Mapping[str, Any], spec: ModelDeploymentSpec, stable: ModelRef | None = None
) -> list[dict[str, Any]]:
    """What a model needs when no rollout is in flight: config, services, stable track."""
    return [
        serving_config_map(body, [stable or spec.model]),
        *services(body, spec),
        deployment(body, spec, "stable", model=stable),
    ]


def render_objects(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Everything the operator creates for a new resource (``tensorgate render``)."""
    spec = parse_resource(body)
    return stable_objects(body, spec)
