"""Validate a manifest against the generated CRD the way the API server does, offline.

Structural schema with JSON Schema (OpenAPI v3.0 semantics, strict about unknown fields as
``kubectl apply --validate=strict`` is), defaults applied first, then every
``x-kubernetes-validations`` CEL rule evaluated with cel-python. Kubernetes' CEL list
extensions used by the CRD (isSorted, indexOf, lastIndexOf) are provided here; the real API
server's own evaluation is exercised by the cluster tests.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import celpy
import jsonschema

from tensorgate.api.crd import openapi_schema


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        if out.get("x-kubernetes-int-or-string"):
            out["type"] = ["integer", "string"]
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Drop null fields and fill in schema defaults for absent properties, as the API server
    does (non-nullable nulls are pruned before defaulting)."""
    if isinstance(value, dict) and "properties" in schema:
        for key in [k for k, v in value.items() if v is None]:  # the API server prunes nulls
            if not schema["properties"].get(key, {}).get("nullable"):
                del value[key]
        for key, sub in schema["properties"].items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key in value:  # a map's values (contract.outputs.<name>) are pruned the same way
            value[key] = apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _cel_functions() -> dict[str, Any]:
    t = celpy.celtypes
    return {
        "isSorted": lambda xs: t.BoolType(list(xs) == sorted(xs)),
        "indexOf": lambda xs, x: t.IntType(list(xs).index(x) if x in list(xs) else -1),
        "lastIndexOf": lambda xs, x: t.IntType(
            len(xs) - 1 - list(reversed(list(xs))).index(x) if x in list(xs) else -1
        ),
    }


_ENV = celpy.Environment()


@functools.cache
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule), functions=_cel_functions())


@functools.cache
def _validator() -> tuple[dict[str, Any], jsonschema.Draft4Validator]:
    schema = openapi_schema()
    return schema, jsonschema.Draft4Validator(_strict(schema))


def _cel_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = _program(rule["rule"])
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        if result is not True and not (hasattr(result, "__bool__") and bool(result)):
            errors.append(f"{path}: {rule['message']}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors += _cel_errors(sub, value[key], f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                errors += _cel_errors(extra, item, f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += _cel_errors(schema["items"], item, f"{path}[{i}]")
    return errors


def crd_errors(manifest: dict[str, Any]) -> list[str]:
    """Every problem the CRD (schema + CEL) finds in ``manifest``; empty when accepted."""
    schema, validator = _validator()  # the schema is generated once per test session
    instance = apply_defaults(schema, copy.deepcopy(manifest))
    errors = [
        ".".join(str(p) for p in e.absolute_path) + ": " + e.message
        for e in validator.iter_errors(instance)
    ]
    if errors:
        return errors
    return _cel_errors(schema, instance, "")
