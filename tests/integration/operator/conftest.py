"""A backend-agnostic Kubernetes for operator scenarios.

``kube`` yields a ``KubeEnv``: an API client, a fresh namespace and the backend's way of
making a Deployment's pods ready. The same test bodies run on KMock (fast, in-process) and,
where the cluster fixtures are available, on the real control plane.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import kmock
import kopf
import pytest

from tensorgate.api.spec import GROUP, KIND, PLURAL, VERSION
from tensorgate.app import make_memo, run_operator
from tensorgate.platform.kubernetes.client import KubeClient, collection_path
from tensorgate.settings import Settings


@dataclass
class KubeEnv:
    client: KubeClient
    namespace: str
    connection: kopf.ConnectionInfo
    mark_ready: Callable[[str], Awaitable[None]]
    backend: str

    def path(self, api_version: str, kind: str, name: str | None = None) -> str:
        base = collection_path(api_version, kind, self.namespace)
        return base if name is None else f"{base}/{name}"

    async def get_md(self, name: str) -> dict[str, Any] | None:
        return await self.client.get(self.path(f"{GROUP}/{VERSION}", KIND, name))

    async def apply_md(self, manifest: dict[str, Any]) -> None:
        manifest = {**manifest, "metadata": {**manifest["metadata"], "namespace": self.namespace}}
        await self.client.apply(manifest)


def _kmock_resources(k: kmock.KubernetesEmulator) -> None:
    k.resources.load_bundled()
    k.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
        kind=KIND,
        singular=KIND.lower(),
        namespaced=True,
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
        shortnames={"md"},
        subresources={"status"},
    )
    k.resources["gateway.networking.k8s.io/v1/httproutes"] = kmock.ResourceInfo(
        kind="HTTPRoute",
        singular="httproute",
        namespaced=True,
        verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
    )


@pytest.fixture
async def kube(kmock: kmock.KubernetesEmulator) -> AsyncIterator[KubeEnv]:
    _kmock_resources(kmock)
    conn = kopf.ConnectionInfo(server=str(kmock.url).rstrip("/"), insecure=True)
    client = KubeClient(conn, timeout_s=5, retries=2, backoff_s=0.05)

    async def mark_ready(deployment: str) -> None:
        path = collection_path("apps/v1", "Deployment", namespace) + f"/{deployment}"
        dep = await client.get(path)
        assert dep is not None, f"deployment {deployment} does not exist"
        replicas = dep["spec"].get("replicas", 1)
        status = {
            "observedGeneration": dep["metadata"].get("generation", 0),
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        }
        await client.patch(path, {"status": status})

    namespace = f"t-{uuid.uuid4().hex[:8]}"
    try:
        yield KubeEnv(client, namespace, conn, mark_ready, "kmock")
    finally:
        await client.aclose()


@dataclass
class RunningOperator:
    memo: Any
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def shutdown(self) -> None:
        self.stop.set()
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(self.task, timeout=15)
        client = self.memo.state.get("client")
        if client is not None:
            await client.aclose()


OperatorStarter = Callable[..., Awaitable[RunningOperator]]


async def launch_operator(
    connection: kopf.ConnectionInfo,
    settings: Settings,
    make_reconciler: Callable[..., Any] | None = None,
) -> RunningOperator:
    """Start the real kopf operator in-process and wait until it is ready."""
    memo = make_memo(settings, connection=connection)
    if make_reconciler is not None:
        memo.make_reconciler = make_reconciler
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_operator(settings, memo=memo, stop_flag=stop, ready_flag=ready))
    await asyncio.wait_for(ready.wait(), timeout=30)
    return RunningOperator(memo, stop, task)


@contextlib.asynccontextmanager
async def operator_pool(
    connection: kopf.ConnectionInfo, make_settings: Callable[..., Settings]
) -> AsyncIterator[OperatorStarter]:
    """Yields ``start(make_reconciler=None, **settings)``; every operator started is stopped
    on exit. ``make_settings`` turns the keyword arguments into the operator's Settings."""
    running: list[RunningOperator] = []

    async def start(
        make_reconciler: Callable[..., Any] | None = None, **options: Any
    ) -> RunningOperator:
        op = await launch_operator(connection, make_settings(**options), make_reconciler)
        running.append(op)
        return op

    try:
        yield start
    finally:
        for op in running:
            await op.shutdown()


@pytest.fixture
async def start_operator(kube: KubeEnv) -> AsyncIterator[OperatorStarter]:
    """Start the real kopf operator in-process (as many times as a test needs)."""

    def settings(interval_s: float = 0.5, **overrides: Any) -> Settings:
        return Settings(reconcile_interval_s=interval_s, **overrides)

    async with operator_pool(kube.connection, settings) as start:
        yield start


@pytest.fixture
async def operator(start_operator: OperatorStarter) -> RunningOperator:
    """The real kopf operator, in-process, against ``kube``; stopped after the test."""
    return await start_operator()
