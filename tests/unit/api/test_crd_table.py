"""The spec types and the generated CRD accept and reject the same manifests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tensorgate.api.crd import render_crd
from tensorgate.api.spec import parse_resource
from tensorgate.errors import SpecError
from tests.crdcheck import crd_errors

ROOT = Path(__file__).resolve().parents[3]

BASE: dict[str, Any] = {
    "apiVersion": "tensorgate.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "mnist", "namespace": "ml"},
    "spec": {
        "model": {"name": "mnist", "version": "2", "uri": "gs://bucket/models/mnist"},
        "contract": {
            "inputs": {"pixels": {"dtype": "float32", "shape": [-1, 784]}},
            "outputs": {
                "probabilities": {"dtype": "float32", "shape": [-1, 10], "kind": "probabilities"}
            },
        },
    },
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """BASE with ``spec.a.b`` set to ``value`` (``...`` deletes it)."""
    doc = copy.deepcopy(BASE)
    node = doc
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return doc


# (id, manifest, None when valid else the field the error must name)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("minimal-gs-model", BASE, None),
    ("pvc-model-cpu", with_("spec.serving", {"gpu": {"count": 0}}) | {}, None),
    ("s3-uri", with_("spec.model.uri", "s3://b/m"), None),
    ("pvc-uri", with_("spec.model.uri", "pvc://models/mnist"), None),
    ("plain-path-uri", with_("spec.model.uri", "/models/mnist"), None),
    ("custom-steps", with_("spec.analysis", {"steps": [5, 50, 100], "interval": "1m30s"}), None),
    ("single-step", with_("spec.analysis", {"steps": [100]}), None),
    (
        "golden-configmap",
        with_("spec.goldenSet", {"configMapRef": {"name": "g", "key": "g.npz"}}),
        None,
    ),
    (
        "golden-s3-with-credentials-secret",
        with_("spec.goldenSet", {"uri": "s3://b/g.npz", "credentialsSecret": "s3-golden"}),
        None,
    ),
    ("golden-gs-ambient", with_("spec.goldenSet", {"uri": "gs://b/g.npz"}), None),
    (
        "golden-pvc-refused-with-the-fix",
        with_("spec.goldenSet", {"uri": "pvc://models/golden/g.npz"}),
        "goldenSet.uri",
    ),
    (
        "golden-bad-secret-name",
        with_("spec.goldenSet", {"uri": "s3://b/g.npz", "credentialsSecret": "Bad_Name"}),
        "goldenSet.credentialsSecret",
    ),
    (
        "prometheus-query",
        with_(
            "spec.analysis",
            {"metrics": [{"name": "err", "query": "sum(rate(x[{{interval}}]))", "max": 0.01}]},
        ),
        None,
    ),
    (
        "gateway-router",
        with_("spec.traffic", {"router": "gateway-api", "parentRefs": [{"name": "gw"}]}),
        None,
    ),
    ("http-uri-rejected", with_("spec.model.uri", "http://x/m"), "model.uri"),
    ("missing-uri", with_("spec.model.uri", ...), "model.uri"),
    ("negative-gpu", with_("spec.serving", {"gpu": {"count": -1}}), "serving.gpu.count"),
    ("steps-not-ending-100", with_("spec.analysis", {"steps": [10, 50]}), "analysis.steps"),
    ("steps-decreasing", with_("spec.analysis", {"steps": [50, 10, 100]}), "analysis.steps"),
    ("steps-repeated", with_("spec.analysis", {"steps": [10, 10, 100]}), "analysis.steps"),
    (
        "drop-above-one",
        with_("spec.analysis", {"maxAccuracyDrop": 1.5}),
        "analysis.maxAccuracyDrop",
    ),
    (
        "drop-negative",
        with_("spec.analysis", {"maxAccuracyDrop": -0.1}),
        "analysis.maxAccuracyDrop",
    ),
    (
        "bad-dtype",
        with_("spec.contract.inputs", {"pixels": {"dtype": "float33", "shape": [-1]}}),
        "contract.inputs.pixels.dtype",
    ),
    ("bad-interval", with_("spec.analysis", {"interval": "soon"}), "analysis.interval"),
    ("non-numeric-version", with_("spec.model.version", "latest"), "model.version"),
    (
        "golden-both-sources",
        with_("spec.goldenSet", {"uri": "/g.npz", "configMapRef": {"name": "g", "key": "k"}}),
        "goldenSet",
    ),
    (
        "metric-without-limit",
        with_("spec.analysis", {"metrics": [{"name": "err", "builtin": "error-rate"}]}),
        "analysis.metrics",
    ),
    (
        "metric-query-and-builtin",
        with_(
            "spec.analysis",
            {"metrics": [{"name": "err", "builtin": "error-rate", "query": "up", "max": 1}]},
        ),
        "analysis.metrics",
    ),
    ("unknown-field", with_("spec.model.colour", "red"), "model.colour"),
    ("zero-replicas", with_("spec.serving", {"replicas": 0}), "serving.replicas"),
    # --- bad resources (issue 12): accepted before, then refused by the API server or worse
    (
        "quantities-valid",
        with_(
            "spec.serving",
            {
                "resources": {
                    "requests": {"cpu": "500m", "memory": "1.5Gi"},
                    "limits": {"cpu": 2, "memory": "2e9"},
                }
            },
        ),
        None,
    ),
    (
        "cpu-negative-string",
        with_("spec.serving", {"resources": {"requests": {"cpu": "-2"}}}),
        "serving.resources.requests.cpu",
    ),
    (
        "cpu-negative-int",
        with_("spec.serving", {"resources": {"limits": {"cpu": -2}}}),
        "serving.resources.limits.cpu",
    ),
    (
        "memory-not-a-quantity",
        with_("spec.serving", {"resources": {"limits": {"memory": "lots"}}}),
        "serving.resources.limits.memory",
    ),
    (
        "credentials-secret-traversal",
        with_("spec.serving", {"credentialsSecret": "../../x"}),
        "serving.credentialsSecret",
    ),
    ("credentials-secret-valid", with_("spec.serving", {"credentialsSecret": "gcs-key.v1"}), None),
    (
        "service-account-upper-case",
        with_("spec.serving", {"serviceAccountName": "Bad_SA"}),
        "serving.serviceAccountName",
    ),
    (
        "model-uri-injects-config",
        with_("spec.model.uri", 'gs://b/m"\n  }\n  config {'),
        "model.uri",
    ),
    ("model-uri-dotdot", with_("spec.model.uri", "pvc://claim/../../etc"), "model.uri"),
    ("model-uri-file-scheme", with_("spec.model.uri", "file:///models/m"), "model.uri"),
    ("golden-uri-absolute-path", with_("spec.goldenSet", {"uri": "/data/golden/g.npz"}), None),
    (
        "golden-uri-with-credentials",
        with_("spec.goldenSet", {"uri": "s3://AKIAX:hunter2@bucket/g.npz"}),
        "goldenSet.uri",
    ),
    ("model-uri-with-credentials", with_("spec.model.uri", "gs://u:pw@bucket/m"), "model.uri"),
    (
        "golden-uri-file-scheme",
        with_("spec.goldenSet", {"uri": "file:///etc/passwd"}),
        "goldenSet.uri",
    ),
    (
        "golden-uri-http",
        with_("spec.goldenSet", {"uri": "http://evil.example/g.npz"}),
        "goldenSet.uri",
    ),
    ("golden-uri-relative", with_("spec.goldenSet", {"uri": "golden.npz"}), "goldenSet.uri"),
    (
        "golden-uri-dotdot",
        with_("spec.goldenSet", {"uri": "/data/../../etc/shadow"}),
        "goldenSet.uri",
    ),
    (
        "golden-configmap-name-traversal",
        with_("spec.goldenSet", {"configMapRef": {"name": "../x", "key": "g.npz"}}),
        "goldenSet.configMapRef.name",
    ),
    (
        "query-typo-placeholder",
        with_(
            "spec.analysis", {"metrics": [{"name": "err", "query": "up{m='{{modle}}'}", "max": 1}]}
        ),
        "analysis.metrics",
    ),
    (
        "query-spaced-placeholder",
        with_(
            "spec.analysis", {"metrics": [{"name": "e", "query": "up{m='{{ model }}'}", "max": 1}]}
        ),
        None,
    ),
    ("replicas-yes", with_("spec.serving", {"replicas": True}), "serving.replicas"),
    ("replicas-string", with_("spec.serving", {"replicas": "3"}), "serving.replicas"),
    ("paused-yes-string", with_("spec.paused", "yes"), "paused"),
    ("drop-true", with_("spec.analysis", {"maxAccuracyDrop": True}), "analysis.maxAccuracyDrop"),
    (
        "interval-400-digits",
        with_("spec.analysis", {"interval": "9" * 400 + "s"}),
        "analysis.interval",
    ),
    ("interval-over-a-week", with_("spec.analysis", {"interval": "200h"}), "analysis.interval"),
    ("interval-one-week", with_("spec.analysis", {"interval": "167h60m"}), None),
]


@pytest.mark.parametrize(
    ("manifest", "bad_field"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_types_and_crd_agree(manifest: dict[str, Any], bad_field: str | None) -> None:
    crd = crd_errors(manifest)
    try:
        parse_resource(manifest)
        types: list[str] = []
    except SpecError as exc:
        types = exc.errors
    if bad_field is None:
        assert types == [] and crd == [], (types, crd)
    else:
        assert types, "types accepted a manifest the table says is bad"
        assert crd, f"CRD accepted what the types reject: {types}"
        assert any(bad_field in e for e in types), types
        leaf = bad_field.split(".")[-1]
        assert any(leaf in e or bad_field.split(".")[0] in e for e in crd), crd


# metadata is outside the CRD's schema (the API server checks only that a name is a DNS
# subdomain); the types check what the child objects need: `<name>-canary` must be a DNS-1035
# label of at most 63 characters, so the operator refuses the spec (InvalidSpec) up front.
METADATA_CASES: list[tuple[str, Any, str]] = [
    ("name-57-chars", {"name": "a" * 57}, "at most 56"),
    ("name-starts-with-digit", {"name": "1mnist"}, "starts with a letter"),
    ("name-underscore", {"name": "my_model"}, "DNS label"),
    ("name-missing", {"namespace": "ml"}, "metadata.name"),
    ("name-not-a-string", {"name": 12}, "metadata.name"),
    ("metadata-a-list", ["name", "x"], "metadata: must be a mapping"),
    ("metadata-a-string", "mnist", "metadata: must be a mapping"),
    ("namespace-bad", {"name": "m", "namespace": "../kube-system"}, "metadata.namespace"),
]


@pytest.mark.parametrize(
    ("meta", "fragment"), [(c[1], c[2]) for c in METADATA_CASES], ids=[c[0] for c in METADATA_CASES]
)
def test_metadata_rejected_by_types(meta: Any, fragment: str) -> None:
    doc = copy.deepcopy(BASE)
    doc["metadata"] = meta
    with pytest.raises(SpecError) as info:
        parse_resource(doc)
    assert any(fragment in e for e in info.value.errors), info.value.errors


def test_metadata_name_of_56_chars_fits() -> None:
    doc = copy.deepcopy(BASE)
    doc["metadata"] = {"name": "a" * 56, "namespace": "ml"}
    parse_resource(doc)


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 15
    assert sum(c[2] is None for c in CASES) >= 5


def test_committed_crd_matches_generated() -> None:
    committed = (ROOT / "crds" / "modeldeployments.tensorgate.dev.yaml").read_text()
    assert committed == render_crd(), "crds/ is stale: run `make crds`"


def test_crd_shape() -> None:
    crd = yaml.safe_load(render_crd())
    spec = crd["spec"]
    assert (spec["group"], spec["names"]["kind"], spec["scope"]) == (
        "tensorgate.dev",
        "ModelDeployment",
        "Namespaced",
    )
    assert spec["names"]["shortNames"] == ["md"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Stable", "Canary", "Weight", "Age"]


def _walk(node: Any, path: str) -> list[str]:
    """Paths of schema properties that have no description."""
    missing = []
    if isinstance(node, dict):
        for key, sub in (node.get("properties") or {}).items():
            if "description" not in sub and key not in {"metadata"}:
                missing.append(f"{path}.{key}")
            missing += _walk(sub, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            missing += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            missing += _walk(node["additionalProperties"], f"{path}{{}}")
    return missing


def test_every_spec_and_status_field_is_described() -> None:
    schema = yaml.safe_load(render_crd())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema["properties"]["spec"], "spec") == []
    assert _walk(schema["properties"]["status"], "status") == []


def test_crdcheck_prunes_nulls_inside_map_values_as_the_api_server_does() -> None:
    """``kind: null`` in a contract output (a map value) is pruned before validation, like a
    null field anywhere else (the API server prunes non-nullable nulls); before, the check
    refused it while the types and the API server take it (the fuzz suite found it)."""
    doc = copy.deepcopy(BASE)
    output = next(iter(doc["spec"]["contract"]["outputs"].values()))
    output["kind"] = None
    assert crd_errors(doc) == []
    output["kind"] = "probability"  # a real mistake is still found
    assert crd_errors(doc) != []
