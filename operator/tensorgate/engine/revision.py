"""The rollout revision: a stable hash of everything a verdict depends on.

A rollout is a revision, not a version string. Editing the model URI, the contract, the golden
set, the smoke settings or the serving pod template (image, args, env, resources, placement)
gives a new revision, which is gated from the start even when ``model.version`` stays the same.
Scaling (``serving.replicas``, ``serving.maxSurge``) and the rollout's pacing (``analysis``,
``traffic``, ``rollback``, ``paused``) do not change the revision.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tensorgate.api.spec import ModelDeploymentSpec, ModelRef

REVISION_LENGTH = 10
# ServingSpec fields that scale the tracks instead of changing what a pod runs.
_SCALING_FIELDS = ("replicas", "maxSurge")


def _digest(doc: Any) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:REVISION_LENGTH]


def rollout_revision(spec: ModelDeploymentSpec) -> str:
    """The revision of ``spec``: equal specs give equal revisions, on any machine.

    Fields left at their defaults are left out, so an operator upgrade that adds a defaulted
    field does not start a rollout of every model."""
    doc = spec.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    serving = {k: v for k, v in (doc.get("serving") or {}).items() if k not in _SCALING_FIELDS}
    return _digest(
        {
            "model": doc.get("model"),
            "contract": doc.get("contract"),
            "goldenSet": doc.get("goldenSet"),
            "smoke": doc.get("smoke"),
            "serving": serving,
        }
    )


def model_key(model: ModelRef) -> str:
    """A key for what TF Serving loads for ``model`` (name, version, uri): configs keyed by it
    never change content, so nothing a running pod reads can change under it."""
    return _digest({"name": model.name, "version": model.version, "uri": model.uri})
