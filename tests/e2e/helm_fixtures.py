"""Helpers for the Helm end-to-end tests: the helm binary, the values, the operator stand-in.

Shared by test_helm_install.py (install, drive, upgrade, uninstall) and test_rbac_audit.py
(the chart's RBAC against the API server's audit log), so both use the same release and
values. The cluster itself comes from the shared ``cluster`` fixture (tests/e2e/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.helpers import require, wait_sync

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tensorgate"
CLUSTER_DIR = ROOT / "tests" / "cluster"
VENV_BIN = Path(sys.executable).parent
RELEASE, RELEASE_NAMESPACE = "tensorgate", "tensorgate-system"
# The release is named after the chart, so every object is called "tensorgate".
SERVICE_ACCOUNT = "tensorgate"
# The identity of the operator this module's release runs: its token is used by nothing else,
# so every request the audit log shows for it is the operator's own.
OPERATOR_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:{SERVICE_ACCOUNT}"
# Every ServiceAccount the chart names (fullname "tensorgate", "tensorgate-<x>" or
# "<release>-tensorgate"), e.g. tests/e2e/conftest.py's "tensorgate-e2e", whose token is also
# used by tests that probe what it may NOT do (deliberate 403s): reported, not asserted.
OPERATOR_USERS = re.compile(
    r"system:serviceaccount:[a-z0-9-]+:(tensorgate|tensorgate-[a-z0-9-]+|[a-z0-9-]+-tensorgate)"
)
RELEASE_SELECTOR = f"app.kubernetes.io/instance={RELEASE}"

# Values for the test cluster. The image is never pulled (kwok fakes the pod); the operator
# runs as a local process with the same arguments and the ServiceAccount's token.
# Optional grants turned off here, so the audit test does not ask a scenario to use them:
OPTIONAL_GRANTS_OFF: dict[str, str] = {
    "rbac.gatewayAPI": "HTTPRoutes: no Gateway API CRDs on the test cluster",
    "peering.enabled": "kopf peering: one operator replica",
    "rbac.ownerReferencesPermissionEnforcement": "modeldeployments/finalizers: admission "
    "plugin off",
}
E2E_VALUES: dict[str, Any] = {
    "image": {"repository": "ghcr.io/tensorgate/tensorgate", "tag": "e2e"},
    "interval": 1,
    "log": {"level": "INFO", "format": "plain"},
    "rbac": {"gatewayAPI": False, "ownerReferencesPermissionEnforcement": False},
    "peering": {"enabled": False},
}
E2E_AUDIT_LOG = os.environ.get("TENSORGATE_E2E_AUDIT_LOG")
# On a cluster with real kubelets (kind, k3d) the chart's pod is the operator: its image.
E2E_IMAGE = os.environ.get("TENSORGATE_E2E_IMAGE")


def cluster_bin() -> Path:
    """The folder build-tools.sh and build-helm.sh build into (read from env.sh)."""
    out = subprocess.run(
        ["bash", "-c", f'source "{CLUSTER_DIR}/env.sh" && echo "$CLUSTER_BIN"'],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return Path(out.stdout.strip())


def helm_binary() -> str:
    """The helm that build-helm.sh built, else one on PATH (any cluster); fails in CI."""
    built = cluster_bin() / "helm"
    found = str(built) if built.is_file() else shutil.which("helm")
    require(
        found is not None,
        "helm",
        "run `bash tests/cluster/build-helm.sh` (`make cluster-tools`) or put helm on PATH",
    )
    assert found is not None
    return found


def audit_log_path() -> Path:
    """The API server's audit log: tests/cluster's (up.sh links it), or the one named by
    TENSORGATE_E2E_AUDIT_LOG for another cluster."""
    return Path(E2E_AUDIT_LOG) if E2E_AUDIT_LOG else ROOT / ".cluster" / "audit.log"


def write_values(path: Path, **overrides: Any) -> Path:
    values = {**E2E_VALUES, **overrides}
    if E2E_IMAGE:
        repository, _, tag = E2E_IMAGE.rpartition(":")
        values["image"] = {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def run(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout_s: float = 60,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a deadline; a failure shows its output."""
    out = subprocess.run(
        list(args),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, **(env or {})},
    )
    if check and out.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {out.returncode}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}"
        )
    return out


def token_kubeconfig(admin_kubeconfig: Path, token: str, path: Path) -> Path:
    """A kubeconfig with the admin's cluster entry (server, CA) and a bearer token user."""
    config = yaml.safe_load(admin_kubeconfig.read_text())
    current = config.get("current-context")
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    base = admin_kubeconfig.resolve().parent
    cluster = dict(cluster)
    if "certificate-authority" in cluster:  # relative paths are relative to the old file
        cluster["certificate-authority"] = str(base / cluster["certificate-authority"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "e2e", "cluster": cluster}],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [
                    {"name": "operator", "context": {"cluster": "e2e", "user": "operator"}}
                ],
                "current-context": "operator",
            }
        )
    )
    path.chmod(0o600)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def local_operator_args(deployment: dict[str, Any]) -> tuple[list[str], str]:
    """The operator container's args from the chart's Deployment, with the listeners moved to
    free ports on 127.0.0.1; and the liveness URL to poll."""
    container = next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"
    )
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    args: list[str] = []
    for arg in container.get("args") or []:
        if arg.startswith("--liveness="):
            arg = f"--liveness={liveness}"
        elif arg.startswith("--metrics-host="):
            arg = "--metrics-host=127.0.0.1"
        elif arg.startswith("--metrics-port="):
            arg = f"--metrics-port={free_port()}"
        args.append(arg)
    return args, liveness


@contextlib.contextmanager
def operator_process(
    deployment: dict[str, Any], kubeconfig: Path, log_path: Path, *, ready_timeout_s: float = 60
) -> Iterator[subprocess.Popen[bytes]]:
    """``tensorgate run`` with the chart Deployment's arguments, standing in for its pod
    (kwok cannot run containers). Ready when kopf's liveness endpoint answers."""
    args, liveness = local_operator_args(deployment)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = str(kubeconfig)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "tensorgate"), "run", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def is_live() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"operator exited {proc.returncode}:\n{tail(log_path)}")
        try:
            return httpx.get(liveness, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_sync(is_live, timeout_s=ready_timeout_s, every_s=0.2, what="operator liveness")
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 15) -> None:
    """SIGTERM (kopf stops gracefully), then SIGKILL after ``grace_s``; never leaves it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""
