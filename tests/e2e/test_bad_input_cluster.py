"""Bad resources the real API server admits (issue 12, item 1), applied with kubectl.

The CRD carries every spec rule (schema patterns and CEL), but a CRD cannot constrain
``metadata.name`` beyond a DNS subdomain of 253 characters. A name that is one yet no DNS
label, or too long for the operator's child objects (``<name>-canary`` must fit 63), is
admitted by the API server and must be refused by the operator itself: ``InvalidSpec``
naming the field, one Warning Event, and no Deployment or Service created.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import Cluster
from tests.helpers import eventually
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.scenarios import MNIST, condition

pytestmark = pytest.mark.cluster

TIMEOUT_S = 60
BAD_NAMES = {
    "too-long-for-children": ("m" * 60, "metadata.name: 60 characters"),
    "dotted-not-a-label": ("mnist.v2", "metadata.name: got 'mnist.v2'"),
}


@pytest.mark.parametrize(("name", "field"), BAD_NAMES.values(), ids=list(BAD_NAMES))
async def test_admitted_bad_name_is_invalid_spec_and_creates_nothing(
    cluster: Cluster, kube: KubeEnv, operator: object, name: str, field: str
) -> None:
    doc = copy.deepcopy(MNIST)
    doc["metadata"] = {"name": name, "namespace": kube.namespace}
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))  # admitted

    async def invalid() -> dict[str, Any] | None:
        md = await kube.get_md(name)
        c = condition(md, "Ready")
        return md if c and c["reason"] == "InvalidSpec" else None

    md = await eventually(invalid, timeout_s=TIMEOUT_S, what="InvalidSpec")
    ready = condition(md, "Ready")
    assert ready is not None and ready["status"] == "False" and field in ready["message"]
    assert md["status"]["phase"] == "Failed"

    async def warning() -> list[dict[str, Any]] | None:
        events = await kube.client.list(kube.path("v1", "Event"))
        found = [
            e
            for e in events
            if e.get("reason") == "InvalidSpec" and e["involvedObject"].get("name") == name
        ]
        return found or None

    events = await eventually(warning, timeout_s=TIMEOUT_S, what="the InvalidSpec Event")
    assert len(events) == 1 and events[0]["type"] == "Warning", events
    assert field in events[0]["message"]
    assert await kube.client.list(kube.path("apps/v1", "Deployment")) == []
    assert await kube.client.list(kube.path("v1", "Service")) == []


async def test_a_null_inside_a_map_value_is_pruned_by_the_api_server(kube: KubeEnv) -> None:
    """What ``tests/crdcheck.py`` assumes: the API server prunes a non-nullable null, also
    inside a map value (``contract.outputs.<name>.kind: null``), and admits the object."""
    doc = copy.deepcopy(MNIST)
    doc["metadata"] = {"name": "mnist", "namespace": kube.namespace}
    doc["spec"]["contract"]["outputs"]["probabilities"]["kind"] = None
    await kube.apply_md(doc)  # JSON with the null (kubectl might drop it on its side)
    stored = await kube.get_md("mnist")
    assert stored is not None
    assert "kind" not in stored["spec"]["contract"]["outputs"]["probabilities"]
