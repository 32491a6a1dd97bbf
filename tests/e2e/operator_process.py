"""The operator as a separate process (``tensorgate run``), so that a test can SIGKILL it.

The process authenticates with the ServiceAccount token the e2e fixtures mint (a kubeconfig
written for it), watches one namespace, and logs to a file the test reads afterwards. Every
process started here is killed when the test's ``OperatorProcesses`` closes; each one also
dies with the test run (``PR_SET_PDEATHSIG``), so none outlives a killed pytest.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import kopf
import yaml

ROOT = Path(__file__).resolve().parents[2]
TENSORGATE = Path(sys.executable).parent / "tensorgate"
PR_SET_PDEATHSIG = 1


def write_kubeconfig(conn: kopf.ConnectionInfo, path: Path) -> Path:
    """A kubeconfig holding only ``conn``'s server, CA and token."""
    cluster: dict[str, object] = {"server": conn.server}
    if conn.ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(conn.ca_data).decode()
    elif conn.ca_path:
        cluster["certificate-authority"] = conn.ca_path
    if conn.insecure:
        cluster["insecure-skip-tls-verify"] = True
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": {"token": conn.token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class OperatorProcesses:
    """Starts ``tensorgate run`` as often as a test needs; ``close`` kills what is left."""

    kubeconfig: Path
    namespace: str
    folder: Path
    args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    rollout_ids: set[object] = field(default_factory=set)  # what a test saw across restarts

    @property
    def current(self) -> subprocess.Popen[bytes]:
        return self.started[-1]

    def log(self, index: int) -> Path:
        return self.folder / f"operator-{index}.log"

    def start(self) -> subprocess.Popen[bytes]:
        index = len(self.started)
        cmd = [str(TENSORGATE), "run", "-n", self.namespace, *self.args]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "operator"),
            "KUBECONFIG": str(self.kubeconfig),
            **self.env,
        }
        with self.log(index).open("wb") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.folder,
                preexec_fn=_die_with_parent,
            )
        self.started.append(proc)
        return proc

    def kill(self) -> None:
        """SIGKILL the current operator (no cleanup handler runs) and reap it."""
        self.current.send_signal(signal.SIGKILL)
        self.current.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(self.log(i).read_text(errors="replace") for i in range(len(self.started)))

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)


@contextlib.contextmanager
def operator_processes(
    conn: kopf.ConnectionInfo,
    namespace: str,
    folder: Path,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[OperatorProcesses]:
    folder.mkdir(parents=True, exist_ok=True)
    kubeconfig = write_kubeconfig(conn, folder / "operator-kubeconfig")
    ops = OperatorProcesses(kubeconfig, namespace, folder, args, env or {})
    try:
        yield ops
    finally:
        ops.close()


def vm_hwm_kib(pid: int) -> int:
    """The peak resident set size of ``pid`` (``VmHWM`` in /proc/PID/status), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")
