"""The Kubernetes objects for a ModelDeployment, as pure functions of the resource.

One Deployment per track (``stable``, ``canary``), one Service selecting every serving pod of
the model (the ``replicas`` router realises weights with replica counts), one Service per
track (for the gate and for weighted routers), and the TF Serving monitoring ConfigMap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from tensorgate.api.spec import API_VERSION, KIND, ModelDeploymentSpec, ModelRef, parse_resource
from tensorgate.engine.revision import model_key, rollout_revision

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")

REST_PORT = 8501
GRPC_PORT = 8500
METRICS_PATH = "/monitoring/prometheus/metrics"
MONITORING_FILE = "monitoring.config"
MONITORING_DIR = "/etc/tensorgate"
SERVING_NAME = "tfserving"
LABEL_MODEL = "tensorgate.dev/model"
LABEL_TRACK = "tensorgate.dev/track"
LABEL_VERSION = "tensorgate.dev/version"
ANNOTATION_REVISION = "tensorgate.dev/revision"
GPU_TAINT_KEY = "nvidia.com/gpu"
RUN_AS_USER = 1000

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


def _meta(body: Mapping[str, Any], name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": body["metadata"].get("namespace", "default"),
        "labels": labels,
        "ownerReferences": [owner_reference(body)],
    }


def _model_path(model: ModelRef) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The --model_base_path for a URI, plus the volumes and mounts it needs."""
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


def serving_container(spec: ModelDeploymentSpec, model: ModelRef) -> dict[str, Any]:
    base_path, _, mounts = _model_path(model)
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
        ],
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {
                "path": f"/v1/models/{model.name}/versions/{model.version}",
                "port": "http",
            },
            "periodSeconds": 5,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "tcpSocket": {"port": "grpc"},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "volumeMounts": [
            {"name": "monitoring", "mountPath": MONITORING_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            *mounts,
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    if spec.serving.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.serving.credentials_secret}}]
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
        ],
        "terminationGracePeriodSeconds": 30,
    }
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
    """TF Serving model server config that serves exactly one version."""
    base_path, _, _ = _model_path(model)
    return (
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{model.name}"\n'
        f'    base_path: "{base_path}"\n'
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ versions: {model.version} }} }}\n"
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
