"""Fixtures for the operator on a real control plane.

- ``cluster`` (session): the test cluster of tests/cluster (``up.sh``; torn down at the end
  if this session started it), or any cluster named by ``TENSORGATE_E2E_KUBECONFIG`` (used as
  is, never started or stopped). Missing tools or a cluster that does not come up fail the
  run, with the fix in the message (never a skip).
- ``player`` (session): the pod player (tests/cluster/player.py) in a thread, when the cluster
  is kwok-based; on a cluster with real kubelets TF Serving serves for itself.
- ``operator_identity`` (session): the chart's ServiceAccount, ClusterRole and binding,
  rendered with the real Helm engine and applied with kubectl, and a token minted for it. The
  operator under test runs with that token only, so a missing grant fails a scenario.
- ``kube`` (test): a ``KubeEnv`` like KMock's: an admin client, a fresh namespace (deleted
  afterwards), the operator's connection, and ``mark_ready`` that waits for the pods to be made
  Ready (by the player) instead of faking it.
- ``start_operator`` / ``operator`` (test): the real kopf operator in-process, watching the
  test's namespace with the ServiceAccount token.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from tensorgate.api.spec import GROUP, PLURAL, VERSION
from tensorgate.platform.kubernetes.client import KubeClient, collection_path
from tensorgate.settings import Settings
from tests.cluster.player import (
    EXAMPLE_URIS,
    PodPlayer,
    build_example_models,
    connection_from_kubeconfig,
)
from tests.helpers import eventually, require
from tests.integration.conftest import model_repo
from tests.integration.operator.conftest import KubeEnv, RunningOperator, operator_pool

__all__ = ["model_repo"]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_DIR = ROOT / "tests" / "cluster"
# The chart's RBAC for the in-process operator. Not named "tensorgate": test_helm_install.py
# installs (and uninstalls) that release in the same session.
RELEASE, RELEASE_NAMESPACE = "tensorgate-e2e", "tensorgate-system"
ANY_CLUSTER = os.environ.get("TENSORGATE_E2E_KUBECONFIG")
# The examples' and scenarios' model URIs, served from models the session builds.
MNIST_URIS = EXAMPLE_URIS
TIMINGS: dict[str, float] = {}


def _env_sh(var: str) -> str:
    out = subprocess.run(
        ["bash", "-c", f'source "{CLUSTER_DIR}/env.sh" && echo "${{{var}}}"'],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip()


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    kubectl_bin: str
    admin: kopf.ConnectionInfo
    is_kwok: bool
    started_here: bool

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [self.kubectl_bin, f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out

    def client(self, conn: kopf.ConnectionInfo | None = None) -> KubeClient:
        return KubeClient(conn or self.admin, timeout_s=10, retries=3, backoff_s=0.1)


def _start_local_cluster() -> tuple[Path, str, bool]:
    """Start tests/cluster's cluster (or reuse a running one): (kubeconfig, kubectl, started)."""
    bin_dir = Path(_env_sh("CLUSTER_BIN"))
    names = _env_sh("CLUSTER_BINARIES[*]").split()
    missing = [n for n in names if not (bin_dir / n).is_file()]
    require(
        not missing,
        f"cluster tools {missing} in {bin_dir}",
        "run `make cluster-tools` (a cold build takes ~7 min on 2 cores)",
    )
    name = _env_sh("CLUSTER_NAME")
    listed = subprocess.run(
        [str(bin_dir / "kwokctl"), "get", "clusters"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "KWOK_WORKDIR": _env_sh("KWOK_WORKDIR")},
    )
    running = name in listed.stdout.split()
    kubeconfig = ROOT / ".cluster" / "kubeconfig"
    start = time.monotonic()
    up = subprocess.run(
        ["bash", str(CLUSTER_DIR / "up.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "KUBECONFIG_OUT": str(kubeconfig)},
    )
    TIMINGS["cluster start-up (up.sh)"] = time.monotonic() - start
    tail = (up.stdout + up.stderr)[-2000:]
    require(up.returncode == 0, "a running test cluster", f"tests/cluster/up.sh failed:\n{tail}")
    return kubeconfig, str(bin_dir / "kubectl"), not running


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if ANY_CLUSTER:
        kubeconfig = Path(ANY_CLUSTER)
        require(kubeconfig.is_file(), f"kubeconfig {kubeconfig}", "TENSORGATE_E2E_KUBECONFIG")
        local_kubectl = Path(_env_sh("CLUSTER_BIN")) / "kubectl"
        kubectl = str(local_kubectl) if local_kubectl.is_file() else shutil.which("kubectl")
        require(kubectl is not None, "kubectl", "put kubectl on PATH or run make cluster-tools")
        assert kubectl is not None
        started = False
    else:
        kubeconfig, kubectl, started = _start_local_cluster()
    probe = Cluster(kubeconfig, kubectl, connection_from_kubeconfig(kubeconfig), False, started)
    nodes = json.loads(probe.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    is_kwok = any(
        (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake" for n in nodes
    )
    found = Cluster(kubeconfig, kubectl, probe.admin, is_kwok, started)
    for crd in sorted((ROOT / "crds").glob("*.yaml")):  # any cluster: install the CRD
        found.kubectl("apply", "-f", str(crd))
    found.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s")
    try:
        yield found
    finally:
        if started:
            subprocess.run(
                ["bash", str(CLUSTER_DIR / "down.sh")],
                capture_output=True,
                timeout=120,
                env={**os.environ, "KUBECONFIG_OUT": str(kubeconfig)},
            )


@dataclass(frozen=True)
class Models:
    mnist: Path  # versions 1 and 2, the contract of examples/mnist-gpu.yaml
    uri_map: dict[str, str]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    folder = tmp_path_factory.mktemp("e2e-models")
    uri_map = build_example_models(folder)
    return Models(folder / "mnist", uri_map)


@pytest.fixture(scope="session")
def player(cluster: Cluster, models: Models) -> Iterator[PodPlayer | None]:
    """Plays TF Serving pods with local serving backends (kwok clusters only)."""
    if not cluster.is_kwok:
        yield None
        return
    play = PodPlayer(cluster.admin, models.uri_map).start_thread()
    try:
        yield play
    finally:
        play.stop_thread()


@dataclass(frozen=True)
class Identity:
    service_account: str
    namespace: str
    connection: kopf.ConnectionInfo

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def chart_rbac(namespace: str = RELEASE_NAMESPACE) -> list[dict[str, Any]]:
    """The operator's ServiceAccount and RBAC objects, rendered by the real Helm engine."""
    import helm_python

    rendered = helm_python.Chart.load(str(ROOT / "charts" / "tensorgate")).render(
        {}, name=RELEASE, namespace=namespace, is_install=True
    )
    docs = []
    for path, text in rendered.items():
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if (
                doc
                and doc["kind"] in RBAC_KINDS
                and not doc["metadata"]["name"].endswith(("-edit", "-view"))
            ):
                docs.append(doc)
    return docs


@pytest.fixture(scope="session")
def operator_identity(cluster: Cluster) -> Iterator[Identity]:
    docs = chart_rbac()
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ServiceAccount"], kinds
    ns = sa["metadata"]["namespace"]
    cluster.kubectl("create", "namespace", ns, check=False)
    manifest = yaml.safe_dump_all(docs)
    cluster.kubectl("apply", "-f", "-", stdin=manifest)
    name = sa["metadata"]["name"]
    token = cluster.kubectl("create", "token", name, "-n", ns, "--duration=2h").stdout.strip()
    assert token, "no token minted"
    conn = kopf.ConnectionInfo(
        server=cluster.admin.server,
        ca_path=cluster.admin.ca_path,
        ca_data=cluster.admin.ca_data,
        insecure=cluster.admin.insecure,
        token=token,
    )
    try:
        yield Identity(name, ns, conn)
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=manifest)


async def _wait_default_sa(client: KubeClient, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
    await eventually(lambda: client.get(path), timeout_s=60, what=f"ServiceAccount {path}")


async def _delete_namespace(client: KubeClient, namespace: str) -> None:
    """Drop kopf's finalizers (the operator has stopped) and delete the namespace."""
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    with contextlib.suppress(Exception):
        for md in await client.list(base):
            if md["metadata"].get("finalizers"):
                await client.patch(
                    f"{base}/{md['metadata']['name']}", {"metadata": {"finalizers": None}}
                )
    with contextlib.suppress(Exception):
        await client.delete(f"/api/v1/namespaces/{namespace}")


@pytest.fixture
async def kube(
    cluster: Cluster, player: PodPlayer | None, operator_identity: Identity
) -> AsyncIterator[KubeEnv]:
    async with cluster_env(cluster, operator_identity, f"e2e-{uuid.uuid4().hex[:8]}") as env:
        yield env


@contextlib.asynccontextmanager
async def cluster_env(
    cluster: Cluster, identity: Identity, namespace: str, *, ready_timeout_s: float = 120
) -> AsyncIterator[KubeEnv]:
    client = cluster.client()
    ns_path = f"/api/v1/namespaces/{namespace}"

    async def not_terminating() -> bool:
        ns = await client.get(ns_path)
        return ns is None or not ns["metadata"].get("deletionTimestamp")

    # A fixed name (e.g. the examples' "ml") may still be going from an earlier run.
    await eventually(not_terminating, timeout_s=120, every_s=0.5, what=f"{ns_path} deleted")
    ns_body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    await client.request("POST", "/api/v1/namespaces", body=ns_body, allow=(409,))
    await _wait_default_sa(client, namespace)

    async def mark_ready(deployment: str) -> None:
        """The pod player (or a real kubelet) makes pods Ready: wait for the Deployment."""
        path = collection_path("apps/v1", "Deployment", namespace) + f"/{deployment}"

        async def available() -> bool:
            dep = await client.get(path)
            if dep is None:
                return False
            want = dep["spec"].get("replicas", 1)
            status = dep.get("status") or {}
            return status.get("readyReplicas") == want and status.get(
                "observedGeneration", 0
            ) >= dep["metadata"].get("generation", 0)

        await eventually(available, timeout_s=ready_timeout_s, every_s=0.2, what=f"{path} ready")

    try:
        yield KubeEnv(client, namespace, identity.connection, mark_ready, "cluster")
    finally:
        await _delete_namespace(client, namespace)
        await client.aclose()


OperatorStarter = Callable[..., Awaitable[RunningOperator]]


@pytest.fixture
async def start_operator(kube: KubeEnv) -> AsyncIterator[OperatorStarter]:
    """The real kopf operator in-process with the ServiceAccount token (as often as needed)."""

    def settings(
        interval_s: float = 1.0, namespaces: tuple[str, ...] | None = None, **overrides: Any
    ) -> Settings:
        return Settings(
            namespaces=namespaces or (kube.namespace,), reconcile_interval_s=interval_s, **overrides
        )

    async with operator_pool(kube.connection, settings) as start:
        yield start


@pytest.fixture
async def operator(start_operator: OperatorStarter) -> RunningOperator:
    op: RunningOperator = await start_operator()
    return op


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"e2e timing: {what}: {seconds:.1f}s")
