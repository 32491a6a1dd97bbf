"""The examples, applied with kubectl as a user would, end with a Ready model on the cluster.

examples/mnist-gpu.yaml names gs://tensorgate-examples/models/mnist; the pod player maps that
URI to a small model with the example's contract (pixels [-1, 784] float32 -> probabilities
[-1, 10]) that the session builds, so the pods' backends load a real SavedModel.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.player import PodPlayer
from tests.e2e.conftest import ROOT, Cluster, Identity, OperatorStarter, cluster_env
from tests.helpers import eventually
from tests.integration.operator.scenarios import condition

pytestmark = [pytest.mark.cluster, pytest.mark.tf]

EXAMPLE = ROOT / "examples" / "mnist-gpu.yaml"


async def test_example_mnist_gpu_is_ready_on_gpu_nodes(
    cluster: Cluster,
    operator_identity: Identity,
    player: PodPlayer | None,
    start_operator: OperatorStarter,
) -> None:
    async with cluster_env(cluster, operator_identity, "ml") as ml:
        # The Secret the example names; a real kubelet would not start the pods without it.
        cluster.kubectl(
            "create", "secret", "generic", "gcs-reader", "-n", "ml",
            "--from-literal=key.json={\"type\": \"service_account\"}",
        )  # fmt: skip
        await start_operator(namespaces=("ml",))
        applied = cluster.kubectl("apply", "-f", str(EXAMPLE))
        assert "modeldeployment.tensorgate.dev/mnist created" in applied.stdout, applied

        async def ready() -> dict[str, Any] | None:
            md = await ml.get_md("mnist")
            c = condition(md, "Ready")
            return md if c and c["status"] == "True" else None

        md = await eventually(ready, timeout_s=120, every_s=0.2, what="mnist Ready")
        assert md["status"]["phase"] == "Promoted"
        assert md["status"]["stableVersion"] == "1"

        pods = await ml.client.list(ml.path("v1", "Pod"), "tensorgate.dev/model=mnist")
        assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
        for pod in pods:
            assert pod["spec"]["nodeName"].startswith("gpu-node-"), pod["spec"]["nodeName"]
            assert pod["spec"]["nodeSelector"] == {
                "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"
            }
            assert condition(pod, "Ready")["status"] == "True"  # type: ignore[index]
            if player is not None:  # Ready because a backend loaded the model on the pod IP
                key = f"ml/{pod['metadata']['name']}/{pod['metadata']['uid']}"
                assert player.backends[key].ready, player.failures.get(key)
                assert player.backends[key].ip == pod["status"]["podIP"]
        get = cluster.kubectl("get", "md", "mnist", "-n", "ml")
        assert "Promoted" in get.stdout, get.stdout
