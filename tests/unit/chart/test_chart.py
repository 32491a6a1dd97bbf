"""The Helm chart, rendered and linted by the real Helm engine (helm-python-sdk, offline).

Every rendered object is validated against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict: unknown fields fail); the prometheus-operator and kopf kinds,
which it has no schema for, are checked structurally here.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tensorgate.api.reasons import Phase
from tensorgate.settings import Settings
from tests.helpers import require

RESYNC_S = Settings().reconcile_interval_s  # the chart installs the operator's own resync


def _optional(module: str) -> Any:
    """The module, or None: the fixtures below fail (CI) or skip (laptop) without it."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover
        return None


helm_python = _optional("helm_python")
kubernetes_validate = _optional("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "tensorgate"
PEERING_CHART = CHART / "charts" / "kopf-peering"
RELEASE, NAMESPACE = "tg", "tensorgate-system"
FULLNAME = "tg-tensorgate"
KUBE_VERSIONS = ("1.33", "1.37")  # oldest and newest schema set we check against

CASES: dict[str, dict[str, Any]] = {
    "default": {},
    "namespace-rbac-two-namespaces": {
        "rbac": {"scope": "namespace"},
        "watchNamespaces": ["ml-a", "ml-b"],
    },
    "ha-two-replicas-pdb-peering": {"replicaCount": 2, "peering": {"enabled": True}},
    "monitoring-and-network-policy": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
        "prometheusRule": {"enabled": True},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
            "extraEgress": [
                {
                    "to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
                    "ports": [{"port": 8443, "protocol": "TCP"}],
                }
            ],
        },
    },
    "grafana-dashboard": {
        "grafana": {"dashboard": {"enabled": True, "annotations": {"grafana_folder": "ML"}}}
    },
    "ledger-secret-and-prometheus": {
        "ledger": {"dsnSecret": {"name": "tensorgate-ledger", "key": "url"}},
        "prometheus": {"url": "http://prometheus-operated.monitoring:9090"},
    },
    "prometheus-auth-tls-and-golden-sets": {
        "prometheus": {
            "url": "https://prometheus.monitoring:9090",
            "tls": {
                "caSecret": {"name": "prometheus-ca", "key": "ca.pem"},
                "clientCertSecret": {"name": "tensorgate-client-tls"},
            },
            "basicAuth": {
                "username": "tensorgate",
                "passwordSecret": {"name": "prometheus-basic-auth", "key": "password"},
            },
            "headers": {"X-Scope-OrgID": "ml"},
        },
        "goldenSets": {
            "maxBytes": 134217728,
            "s3Endpoint": "https://minio.storage:9000",
            "s3Region": "eu-west-1",
        },
        "rbac": {"goldenSetSecrets": True},
    },
    "prometheus-bearer-token": {
        "prometheus": {
            "url": "https://prometheus.monitoring:9090",
            "bearerToken": {"secret": {"name": "prometheus-token", "key": "token"}},
        },
        "goldenSets": {"gcsEndpoint": "https://gcs.internal:4443", "anonymous": True},
    },
    "ha-namespaced-digest-openshift": {
        "replicaCount": 3,
        "peering": {"enabled": True, "name": "tg-peers"},
        "rbac": {
            "scope": "namespace",
            "gatewayAPI": False,
            "ownerReferencesPermissionEnforcement": True,
            "aggregateToDefaultRoles": False,
        },
        "watchNamespaces": ["ml"],
        "image": {"digest": "sha256:" + "ab" * 32},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
        ],
        "podAnnotations": {"example.com/team": "ml-platform"},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
    },
}


@pytest.fixture(scope="module")
def helm() -> Any:
    require(
        helm_python is not None,
        "helm-python-sdk (the Helm engine)",
        "make venv (pip install helm-python-sdk)",
    )
    return helm_python


@pytest.fixture(scope="module")
def validator() -> Any:
    require(
        kubernetes_validate is not None,
        "kubernetes-validate",
        "make venv (pip install kubernetes-validate)",
    )
    return kubernetes_validate


@functools.cache
def _render(case: str) -> tuple[dict[str, Any], ...]:
    assert helm_python is not None
    files = helm_python.Chart.load(str(CHART)).render(
        CASES[case], name=RELEASE, namespace=NAMESPACE, is_install=True
    )
    objects: list[dict[str, Any]] = []
    for path, text in sorted(files.items()):
        if not path.endswith(".yaml"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return tuple(objects)


def render(helm: Any, case: str) -> list[dict[str, Any]]:
    return list(_render(case))


def find(
    objects: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None
) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] == kind
        and (name is None or o["metadata"]["name"] == name)
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return dict(pod["containers"][0])


# --- structural checks for kinds kubernetes-validate has no schema for -------------------

DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def _check_service_monitor(obj: dict[str, Any]) -> None:
    spec = obj["spec"]
    assert set(spec) <= {"namespaceSelector", "selector", "endpoints", "jobLabel"}
    assert spec["selector"]["matchLabels"], "empty selector would scrape every Service"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "honorLabels"}
        assert isinstance(endpoint["port"], str)
        assert endpoint["path"].startswith("/")
        assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])


def _check_prometheus_rule(obj: dict[str, Any]) -> None:
    assert set(obj["spec"]) == {"groups"}
    for group in obj["spec"]["groups"]:
        assert set(group) == {"name", "rules"} and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            assert isinstance(rule["alert"], str) and isinstance(rule["expr"], str)
            assert "for" not in rule or DURATION.match(rule["for"])
            for key in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in rule.get(key, {}).values())


@functools.cache
def _peering_crds() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((PEERING_CHART / "crds" / "kopf.dev-peerings.yaml").read_text())
    return {d["spec"]["names"]["kind"]: d for d in docs if d}


def _check_kopf_peering(obj: dict[str, Any]) -> None:
    crd = _peering_crds()[obj["kind"]]
    assert obj["apiVersion"] == f"{crd['spec']['group']}/v1"
    assert (crd["spec"]["scope"] == "Namespaced") == ("namespace" in obj["metadata"])
    jsonschema.validate(obj, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


STRUCTURAL = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _check_service_monitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): _check_prometheus_rule,
    ("kopf.dev/v1", "KopfPeering"): _check_kopf_peering,
    ("kopf.dev/v1", "ClusterKopfPeering"): _check_kopf_peering,
}


def _short(exc: Exception) -> str:
    return str(exc).split("\n\n", 1)[0][:500]


# --- tests ---------------------------------------------------------------------------------


def test_chart_app_version_equals_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]


def test_chart_crds_are_byte_identical_to_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert top, "no CRDs in crds/"
    assert chart.keys() == top.keys(), "run `make crds`"
    for name, data in top.items():
        assert chart[name] == data, f"charts/tensorgate/crds/{name} differs: run `make crds`"


@pytest.mark.parametrize("case", sorted(CASES))
def test_chart_lint_reports_no_errors_or_warnings(helm: Any, case: str) -> None:
    report = helm.lint(
        str(CHART),
        CASES[case],
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"{KUBE_VERSIONS[0]}.0",
    )
    assert report["errors"] == []
    # severity 1 is INFO (e.g. "icon is recommended"); WARNING (2) and ERROR (3+) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_chart_renders_objects_valid_for_kubernetes(helm: Any, validator: Any, case: str) -> None:
    objects = render(helm, case)
    assert objects
    problems = []
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        check = STRUCTURAL.get((obj["apiVersion"], obj["kind"]))
        if check is not None:
            check(obj)
            continue
        for version in KUBE_VERSIONS:
            try:
                validator.validate(obj, version, strict=True)
            except validator.SchemaNotFoundError:
                problems.append(f"{where}: no schema and no structural check")
            except validator.ValidationError as exc:
                problems.append(f"{where} (k8s {version}): {_short(exc)}")
    assert problems == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_chart_objects_carry_standard_labels_and_namespace(helm: Any, case: str) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
    for obj in render(helm, case):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "tensorgate"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "tensorgate-0.1.0"
        assert ("namespace" in obj["metadata"]) == (obj["kind"] not in cluster_scoped)


@pytest.mark.parametrize("case", sorted(CASES))
def test_chart_rbac_has_no_wildcards(helm: Any, case: str) -> None:
    for obj in render(helm, case):
        for rule in obj.get("rules") or []:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(key, [])), (obj, rule)


def _rules(role: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """(apiGroup, resource, verbs, resourceNames), one per group x resource."""
    return {
        (group, resource, tuple(sorted(rule["verbs"])), tuple(rule.get("resourceNames", ())))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


OPERATOR_RULES = {
    ("tensorgate.dev", "modeldeployments", ("get", "list", "watch"), ()),
    ("tensorgate.dev", "modeldeployments/status", ("patch",), ()),
    ("apps", "deployments", ("create", "delete", "get", "list", "patch", "watch"), ()),
    ("", "services", ("create", "get", "list", "patch", "watch"), ()),
    ("", "configmaps", ("create", "get", "patch"), ()),
    ("", "pods", ("list", "watch"), ()),
    ("discovery.k8s.io", "endpointslices", ("list",), ()),
    ("", "events", ("create",), ()),
    ("gateway.networking.k8s.io", "httproutes", ("create", "get", "patch"), ()),
}


def test_chart_default_rbac_is_exactly_the_operators_calls(helm: Any) -> None:
    objects = render(helm, "default")
    role = one(objects, "ClusterRole", FULLNAME)
    assert _rules(role) == OPERATOR_RULES
    binding = one(objects, "ClusterRoleBinding", FULLNAME)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": FULLNAME,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    ]
    assert one(objects, "ServiceAccount", FULLNAME)
    assert not find(objects, "Role") and not find(objects, "RoleBinding")


def test_chart_rbac_covers_every_kind_the_operator_client_knows(helm: Any) -> None:
    from tensorgate.platform.kubernetes import client

    granted = {(group, resource) for group, resource, _, _ in OPERATOR_RULES}
    for api_version, plural in ((av, plural) for (av, _), plural in client._PATHS.items()):
        group = api_version.rpartition("/")[0]
        assert (group, plural) in granted, f"{api_version} {plural} has no RBAC rule"
    role = one(render(helm, "default"), "ClusterRole", FULLNAME)
    assert _rules(role) == OPERATOR_RULES


def test_chart_namespace_scope_has_a_role_per_namespace_and_nothing_cluster_wide(
    helm: Any,
) -> None:
    objects = render(helm, "namespace-rbac-two-namespaces")
    assert not find(objects, "ClusterRole", FULLNAME)
    assert not find(objects, "ClusterRoleBinding")
    for ns in ("ml-a", "ml-b"):
        (role,) = find(objects, "Role", FULLNAME, ns)
        assert _rules(role) == OPERATOR_RULES
        (binding,) = find(objects, "RoleBinding", FULLNAME, ns)
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"][0]["namespace"] == NAMESPACE
    args = container(objects)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=ml-a",
        "--namespace=ml-b",
    ]
    assert not any(a.startswith("--peering") for a in args)


def test_chart_ha_runs_peering_with_a_pdb_and_a_cluster_peering_object(helm: Any) -> None:
    objects = render(helm, "ha-two-replicas-pdb-peering")
    deployment = one(objects, "Deployment", FULLNAME)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert f"--peering={FULLNAME}" in container(objects)["args"]
    pdb = one(objects, "PodDisruptionBudget", FULLNAME)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert one(objects, "ClusterKopfPeering", FULLNAME)
    role = one(objects, "ClusterRole", FULLNAME)
    assert _rules(role) - OPERATOR_RULES == {
        ("kopf.dev", "clusterkopfpeerings", ("list", "watch"), ()),
        ("kopf.dev", "clusterkopfpeerings", ("patch",), (FULLNAME,)),
    }
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_chart_single_replica_is_standalone_without_pdb_or_peering(helm: Any) -> None:
    objects = render(helm, "default")
    assert one(objects, "Deployment", FULLNAME)["spec"]["strategy"]["type"] == "Recreate"
    assert not find(objects, "PodDisruptionBudget")
    assert not find(objects, "ClusterKopfPeering") and not find(objects, "KopfPeering")


def test_chart_ha_namespaced_peers_per_namespace_with_owner_reference_grant(
    helm: Any,
) -> None:
    objects = render(helm, "ha-namespaced-digest-openshift")
    assert len(find(objects, "KopfPeering", "tg-peers", "ml")) == 1
    assert not find(objects, "ClusterKopfPeering")
    (role,) = find(objects, "Role", FULLNAME, "ml")
    without_gateway = {r for r in OPERATOR_RULES if r[1] != "httproutes"}
    assert _rules(role) == without_gateway | {
        ("tensorgate.dev", "modeldeployments/finalizers", ("update",), ()),
        ("kopf.dev", "kopfpeerings", ("list", "watch"), ()),
        ("kopf.dev", "kopfpeerings", ("patch",), ("tg-peers",)),
    }
    assert not find(objects, "ClusterRole")  # aggregated roles switched off too
    op = container(objects)
    assert op["image"] == "ghcr.io/tensorgate/tensorgate@sha256:" + "ab" * 32
    assert "--peering=tg-peers" in op["args"] and "--namespace=ml" in op["args"]
    assert one(objects, "PodDisruptionBudget", FULLNAME)


def test_chart_deployment_runs_restricted_with_liveness_and_metrics(helm: Any) -> None:
    objects = render(helm, "default")
    pod = one(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    op = container(objects)
    assert op["image"] == "ghcr.io/tensorgate/tensorgate:0.1.0"
    assert "command" not in op  # the image's ENTRYPOINT is `tensorgate run`
    assert op["args"] == [
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
        "--metrics-host=0.0.0.0",
        f"--interval={RESYNC_S:g}",
        "--log-format=json",
        "--log-level=INFO",
        "--golden-max-bytes=67108864",
        "--golden-timeout=60",
    ]
    assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert {p["name"]: p["containerPort"] for p in op["ports"]} == {
        "metrics": 9090,
        "healthz": 8080,
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = op["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsUser"] == 10001
    assert op["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    assert pod["serviceAccountName"] == FULLNAME
    names = {e["name"] for e in op["env"]}
    assert "TENSORGATE_LEDGER_DSN" not in names and "TENSORGATE_PROMETHEUS_URL" not in names
    service = one(objects, "Service", f"{FULLNAME}-metrics")
    assert service["spec"]["ports"][0]["port"] == 9090
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


@pytest.mark.parametrize("case", sorted(CASES))
def test_chart_args_and_env_are_ones_tensorgate_run_accepts(helm: Any, case: str) -> None:
    import typer

    from tensorgate.cli import app

    group: Any = typer.main.get_command(app)
    run = group.get_command(None, "run")
    op = container(render(helm, case))
    ctx = run.make_context("run", list(op["args"]))  # parses, raises on unknown options
    assert ctx.params["liveness"] == "http://0.0.0.0:8080/healthz"
    assert (ctx.params["metrics_port"], ctx.params["metrics_host"]) == (9090, "0.0.0.0")
    assert list(ctx.params["namespace"]) == CASES[case].get("watchNamespaces", [])
    envvars = {p.envvar for p in run.params if p.envvar}
    for env in op["env"]:
        assert env["name"] in envvars | {"POD_ID"}, env["name"]


def test_chart_ledger_dsn_comes_from_a_secret_and_prometheus_url_from_values(
    helm: Any,
) -> None:
    env = {e["name"]: e for e in container(render(helm, "ledger-secret-and-prometheus"))["env"]}
    assert env["TENSORGATE_LEDGER_DSN"]["valueFrom"] == {
        "secretKeyRef": {"name": "tensorgate-ledger", "key": "url"}
    }
    assert "value" not in env["TENSORGATE_LEDGER_DSN"]
    assert env["TENSORGATE_PROMETHEUS_URL"]["value"] == (
        "http://prometheus-operated.monitoring:9090"
    )


def test_chart_prometheus_secrets_are_mounted_files_passed_by_path(helm: Any) -> None:
    """Credentials reach the operator as files of Secret volumes: only paths in the args,
    nothing secret in env; every file flag points into a mounted Secret volume."""
    objects = render(helm, "prometheus-auth-tls-and-golden-sets")
    dep = one(objects, "Deployment", FULLNAME)
    pod = dep["spec"]["template"]["spec"]
    op = container(objects)
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {
        "prometheus-ca": "prometheus-ca",
        "prometheus-client-cert": "tensorgate-client-tls",
        "prometheus-basic-auth": "prometheus-basic-auth",
    }
    mounts = {m["mountPath"]: m["name"] for m in op["volumeMounts"] if m["name"] in secrets}
    assert all(m["readOnly"] for m in op["volumeMounts"] if m["name"] in secrets)
    files = dict(a.removeprefix("--").split("=", 1) for a in op["args"] if "-file=" in a)
    assert files == {
        "prometheus-ca-file": "/etc/tensorgate/prometheus/ca/ca.pem",
        "prometheus-cert-file": "/etc/tensorgate/prometheus/client/tls.crt",
        "prometheus-key-file": "/etc/tensorgate/prometheus/client/tls.key",
        "prometheus-password-file": "/etc/tensorgate/prometheus/basic-auth/password",
    }
    for path in files.values():
        assert path.rsplit("/", 1)[0] in mounts, path
    assert "--prometheus-username=tensorgate" in op["args"]
    assert "--prometheus-header=X-Scope-OrgID=ml" in op["args"]
    assert "--golden-max-bytes=134217728" in op["args"]  # an integer, not 1.34217728e+08
    assert "--golden-s3-endpoint=https://minio.storage:9000" in op["args"]
    assert {e["name"] for e in op["env"]} == {"POD_ID", "TENSORGATE_PROMETHEUS_URL"}
    role = one(objects, "ClusterRole", FULLNAME)
    assert ("", "secrets", ("get",), ()) in _rules(role)


def test_chart_bearer_token_is_a_mounted_file(helm: Any) -> None:
    op = container(render(helm, "prometheus-bearer-token"))
    assert (
        "--prometheus-bearer-token-file=/etc/tensorgate/prometheus/bearer-token/token" in op["args"]
    )
    assert "--golden-anonymous" in op["args"]
    assert "--golden-gcs-endpoint=https://gcs.internal:4443" in op["args"]


def test_chart_ledger_spools_to_an_empty_dir_passed_to_run(helm: Any) -> None:
    objects = render(helm, "ledger-secret-and-prometheus")
    op = container(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    mount = {"name": "ledger-spool", "mountPath": "/var/lib/tensorgate/ledger-spool"}
    assert mount in op["volumeMounts"]
    assert {"name": "ledger-spool", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    assert "--ledger-spool-dir=/var/lib/tensorgate/ledger-spool" in op["args"]


NON_TERMINAL = {
    Phase.PENDING,
    Phase.DEPLOYING,
    Phase.SMOKE_TESTING,
    Phase.EVALUATING,
    Phase.PROGRESSING,
    Phase.PROMOTING,
}


def test_chart_alerts_on_rollbacks_and_stuck_rollouts(helm: Any) -> None:
    objects = render(helm, "monitoring-and-network-policy")
    rules = {r["alert"]: r for r in one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert rules.keys() == {"TensorGateRollback", "TensorGateRolloutStuck"}
    assert rules["TensorGateRollback"]["expr"] == "increase(tensorgate_rollbacks_total[15m]) > 0"
    stuck = rules["TensorGateRolloutStuck"]
    assert stuck["for"] == "30m"
    match = re.search(r'tensorgate_rollout_phase\{phase=~"([^"]+)"\}', stuck["expr"])
    assert match is not None
    phases = set(match.group(1).split("|"))
    assert phases == {str(p) for p in NON_TERMINAL}
    terminal_or_human = set(Phase) - NON_TERMINAL
    assert terminal_or_human == {Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.PAUSED}
    for rule in rules.values():  # Helm must not have eaten Prometheus' own templates
        assert "{{ $labels.namespace }}/{{ $labels.model }}" in rule["annotations"]["summary"]
        assert "kubectl tensorgate status" in rule["annotations"]["description"]
    # The label names the operator's metrics use (observability.py): namespace, model.
    assert "by (namespace, model, phase)" in stuck["expr"]


def test_chart_alerts_use_metrics_the_operator_exports() -> None:
    from tensorgate.api.reasons import Phase
    from tensorgate.observability import OperatorMetrics

    metrics = OperatorMetrics()
    metrics.rollbacks.labels(namespace="ml", model="m", reason="RolledBack").inc()
    metrics.rollout_phase.set("ml", "m", Phase.DEPLOYING)
    samples = {
        sample.name: set(sample.labels)
        for family in metrics.registry.collect()
        for sample in family.samples
    }
    assert samples["tensorgate_rollbacks_total"] == {"namespace", "model", "reason"}
    assert samples["tensorgate_rollout_phase"] == {"namespace", "model", "phase"}


def test_chart_service_monitor_selects_the_metrics_service(helm: Any) -> None:
    objects = render(helm, "monitoring-and-network-policy")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    service = one(objects, "Service", f"{FULLNAME}-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_chart_network_policy_admits_scrapes_and_limits_egress(helm: Any) -> None:
    policy = one(render(helm, "monitoring-and-network-policy"), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    metrics_rule = policy["spec"]["ingress"][0]
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_rule["from"][0]["namespaceSelector"]
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 443, 6443, 8500, 8501, 9090, 5432, 8443} == egress_ports


def test_chart_optional_objects_are_off_by_default(helm: Any) -> None:
    kinds = {o["kind"] for o in render(helm, "default")}
    assert kinds == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"}


# --- values.yaml and values.schema.json ---------------------------------------------------

KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


def _commented_paths(text: str) -> tuple[set[str], set[str]]:
    """(every key path in values.yaml, the paths whose line has a comment above or beside)."""
    stack: list[tuple[int, str]] = []
    paths, commented = set(), set()
    previous = ""
    for line in text.splitlines():
        match = KEY.match(line)
        if match:
            indent = len(match["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match["key"]))
            path = ".".join(key for _, key in stack)
            paths.add(path)
            if previous.lstrip().startswith("#") or " # " in line:
                commented.add(path)
        if line.strip():
            previous = line
    return paths, commented


def _yaml_paths(node: Any, prefix: str = "") -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}{key}"
            found |= {path} | _yaml_paths(value, path + ".")
    return found


def test_values_every_key_has_a_comment() -> None:
    text = (CHART / "values.yaml").read_text()
    paths, commented = _commented_paths(text)
    assert paths == _yaml_paths(yaml.safe_load(text)), "values.yaml parse mismatch"
    assert sorted(paths - commented) == []


def test_values_schema_describes_every_value_strictly() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(values, schema)
    assert set(values) <= set(schema["properties"])


@pytest.mark.parametrize(
    "values",
    [
        {"replicas": 2},
        {"image": {"repo": "x"}},
        {"log": {"format": "xml"}},
        {"rbac": {"scope": "everything"}},
        {"watchNamespaces": ["Not_A_Namespace"]},
        {"image": {"digest": "latest"}},
        {"prometheus": {"url": "https://user:pw@prometheus:9090"}},
    ],
    ids=[
        "unknown-top-level",
        "unknown-nested",
        "bad-log-format",
        "bad-rbac-scope",
        "bad-namespace",
        "bad-digest",
        "prometheus-password-in-url",
    ],
)
def test_values_schema_rejects_unknown_or_invalid_values(helm: Any, values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        helm.Chart.load(str(CHART)).render(
            values, name=RELEASE, namespace=NAMESPACE, is_install=True
        )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "set peering.enabled=true"),
        ({"rbac": {"scope": "namespace"}}, "needs watchNamespaces"),
        (
            {"prometheus": {"basicAuth": {"username": "u"}}},
            "prometheus.basicAuth.passwordSecret.name",
        ),
    ],
    ids=[
        "replicas-without-peering",
        "namespace-scope-without-namespaces",
        "basic-auth-without-password-secret",
    ],
)
def test_values_combinations_that_cannot_work_fail_with_the_fix(
    helm: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        helm.Chart.load(str(CHART)).render(
            values, name=RELEASE, namespace=NAMESPACE, is_install=True
        )


# --- kopf's peering CRDs (subchart, installed only with peering.enabled) ------------------


def test_peering_crds_come_from_a_subchart_enabled_by_peering(helm: Any, validator: Any) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["dependencies"] == [
        {"name": "kopf-peering", "version": "0.1.0", "condition": "peering.enabled"}
    ]
    report = helm.lint(str(PEERING_CHART), strict=True, kube_version=f"{KUBE_VERSIONS[0]}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    sub = yaml.safe_load((PEERING_CHART / "Chart.yaml").read_text())
    assert (sub["name"], sub["version"]) == ("kopf-peering", "0.1.0")
    crds = _peering_crds()
    assert {c["metadata"]["name"] for c in crds.values()} == {
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    }
    assert {k: c["spec"]["scope"] for k, c in crds.items()} == {
        "KopfPeering": "Namespaced",
        "ClusterKopfPeering": "Cluster",
    }
    for crd in crds.values():
        validator.validate(crd, KUBE_VERSIONS[0], strict=True)
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"]
        # kopf patches .status on the object itself: no status subresource.
        assert "subresources" not in version
