"""Generate the ModelDeployment CRD from the spec and status types (as controller-gen does).

``make crds`` writes ``crds/modeldeployments.tensorgate.dev.yaml`` with :func:`render_crd`;
a test fails when the committed file differs from a fresh render.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tensorgate.api.spec import GROUP, KIND, PLURAL, VERSION, ModelDeploymentSpec
from tensorgate.api.status import ModelDeploymentStatus

_DROP_KEYS = {"title", "additionalProperties_false"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs, collapse Optional, and map JSON Schema 2020 to structural OpenAPI v3."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
        merged = {**target, **node}  # local description/default win over the referenced one
        return _resolve(merged, defs)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) == 1:
            return _resolve({**options[0], **node}, defs)
        if {o.get("type") for o in options} == {"integer", "string"}:
            return _resolve({**node, "x-kubernetes-int-or-string": True}, defs)
        raise ValueError(f"cannot express anyOf {options} in a structural schema")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "default" and value is None:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
            continue
        if key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
            continue
        if key in {"properties"}:
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
            continue
        out[key] = _resolve(value, defs)
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("additionalProperties") is True:
        out.pop("additionalProperties")
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _schema(model: type[Any]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    resolved: dict[str, Any] = _resolve(raw, defs)
    return resolved


def openapi_schema() -> dict[str, Any]:
    """The CRD's ``openAPIV3Schema`` for version v1alpha1."""
    spec = _schema(ModelDeploymentSpec)
    status = _schema(ModelDeploymentStatus)
    spec["description"] = "What to roll out and how to judge it."
    status["description"] = "Observed state of the rollout, written by the operator."
    return {
        "type": "object",
        "description": "A TensorFlow model rolled out behind a shape-asserting smoke test, a "
        "golden-set accuracy gate and progressive, metric-checked traffic steps.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "tensorgate.dev/v1alpha1"},
            "kind": {"type": "string", "description": "ModelDeployment"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def build_crd() -> dict[str, Any]:
    """The whole CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "tensorgate"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["md"],
                "categories": ["tensorgate"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Stable", "type": "string", "jsonPath": ".status.stableVersion"},
                        {"name": "Canary", "type": "string", "jsonPath": ".status.canaryVersion"},
                        {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def render_crd() -> str:
    """The CRD as the YAML text committed under crds/."""
    header = "# Generated by `make crds` from operator/tensorgate/api/. Do not edit by hand.\n"
    return header + yaml.dump(build_crd(), Dumper=Yaml11SafeDumper, sort_keys=False, width=100)


# Strings a YAML 1.1 reader (kubectl's, Go's) takes for booleans; PyYAML leaves some bare.
_YAML11_BOOLS = frozenset(
    [
        "y",
        "Y",
        "yes",
        "Yes",
        "YES",
        "n",
        "N",
        "no",
        "No",
        "NO",
        "true",
        "True",
        "TRUE",
        "false",
        "False",
        "FALSE",
        "on",
        "On",
        "ON",
        "off",
        "Off",
        "OFF",
    ]
)


class Yaml11SafeDumper(yaml.SafeDumper):
    """Quotes every string a YAML 1.1 reader would read as a boolean (a required field named
    ``n`` is written ``'n'``, or the API server refuses the CRD)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if value in _YAML11_BOOLS:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


Yaml11SafeDumper.add_representer(str, _represent_str)
