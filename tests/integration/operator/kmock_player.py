"""Plays a kubelet and kube-controller-manager for KMock (which has neither).

For every serving Deployment in the namespace it runs the real local serving backend (real
TensorFlow) for the version the Deployment names, publishes the server's address in an
EndpointSlice of the track's Service, and reports the Deployment ready once the model has
loaded; when the Deployment goes, so does the server. The operator then finds endpoints
exactly as in a cluster. (On the real control plane, tests/cluster's pod player does this
for real pods instead.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from tensorgate.platform.kubernetes import manifests as m
from tensorgate.serving.backend import LocalModelServer
from tests.integration.operator.conftest import KubeEnv


def _arg(args: list[str], flag: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"--{flag}="))


@dataclass
class KMockPlayer:
    kube: KubeEnv
    servers: dict[str, tuple[str, LocalModelServer]] = field(default_factory=dict)

    async def step(self) -> None:
        deps = await self.kube.client.list(self.kube.path("apps/v1", "Deployment"))
        live = set()
        for dep in deps:
            name = dep["metadata"]["name"]
            live.add(name)
            labels = dep["spec"]["template"]["metadata"]["labels"]
            version = labels[m.LABEL_VERSION]
            args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
            key = f"{version} {' '.join(args)}"  # a new model path or config is a new server
            current = self.servers.get(name)
            if current is None or current[0] != key:
                if current is not None:
                    await asyncio.to_thread(current[1].stop)
                server = LocalModelServer(
                    _arg(args, "model_name"), _arg(args, "model_base_path"), versions=[int(version)]
                )
                await asyncio.to_thread(server.start)
                self.servers[name] = (key, server)
                await self._publish(dep, labels[m.LABEL_TRACK], server)
            await self._ready(dep)
        for name in set(self.servers) - live:
            _, server = self.servers.pop(name)
            await asyncio.to_thread(server.stop)

    async def _publish(self, dep: dict[str, Any], track: str, server: LocalModelServer) -> None:
        model = dep["metadata"]["labels"][m.LABEL_MODEL]
        service = m.track_service_name(model, track)  # type: ignore[arg-type]
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-play",
                "namespace": self.kube.namespace,
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [server.host], "conditions": {"ready": True}}],
            "ports": [
                {"name": "http", "port": server.rest_port, "protocol": "TCP"},
                {"name": "grpc", "port": server.grpc_port, "protocol": "TCP"},
            ],
        }
        path = self.kube.path("discovery.k8s.io/v1", "EndpointSlice", slice_["metadata"]["name"])
        if await self.kube.client.get(path) is not None:
            await self.kube.client.patch(
                path, {"endpoints": slice_["endpoints"], "ports": slice_["ports"]}
            )
        else:
            await self.kube.client.apply(slice_)

    async def _ready(self, dep: dict[str, Any]) -> None:
        replicas = dep["spec"].get("replicas", 1)
        status = dep.get("status") or {}
        if status.get("readyReplicas") == replicas and status.get("updatedReplicas") == replicas:
            return
        path = self.kube.path("apps/v1", "Deployment", dep["metadata"]["name"])
        await self.kube.client.patch(
            path,
            {
                "status": {
                    "observedGeneration": dep["metadata"].get("generation", 0),
                    "replicas": replicas,
                    "readyReplicas": replicas,
                    "updatedReplicas": replicas,
                    "availableReplicas": replicas,
                }
            },
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)

    def close(self) -> None:
        for _, server in self.servers.values():
            server.stop()
        self.servers.clear()


@contextlib.asynccontextmanager
async def playing(kube: KubeEnv) -> AsyncIterator[KMockPlayer]:
    player = KMockPlayer(kube)
    stop = asyncio.Event()
    task = asyncio.create_task(player.run(stop))
    try:
        yield player
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
        player.close()
