"""A ``tensorgate rollout --local`` killed from outside leaves no serving backend running.

A CI job's timeout SIGKILLs the rollout: no ``finally`` runs, so only the kernel
(``PR_SET_PDEATHSIG``, set by ``tensorgate.processes.spawn``) or the backend's own watchdog
(``--parent-pid``) can stop the backends it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import (
    ProcessIdentity,
    child_processes,
    is_running,
    kill_if_running,
    wait_sync,
)
from tests.integration.conftest import CANDIDATE, GOOD, ModelRepo

pytestmark = pytest.mark.tf

BACKEND = "tensorgate.serving.backend"


def test_rollout_local_sigkilled_leaves_no_backend_running(
    tmp_path: Path, model_repo: ModelRepo
) -> None:
    files = []
    for version in (GOOD, CANDIDATE):
        path = tmp_path / f"v{version}.yaml"
        # a long interval: the rollout is still at its first step when it is killed
        path.write_text(yaml.safe_dump(model_repo.manifest(version, interval="60s")))
        files += ["-f", str(path)]
    log = tmp_path / "rollout.log"
    with log.open("wb") as out:
        rollout = subprocess.Popen(
            [sys.executable, "-m", "tensorgate.cli", "rollout", "--local", *files],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    backends: list[ProcessIdentity] = []
    try:

        def stable_and_canary() -> list[ProcessIdentity] | None:
            if rollout.poll() is not None:
                raise AssertionError(f"rollout exited {rollout.returncode}: {log.read_text()}")
            found = child_processes(rollout.pid, BACKEND)
            return found if len(found) == 2 else None

        backends = wait_sync(stable_and_canary, timeout_s=180, what="two serving backends")
        os.kill(rollout.pid, signal.SIGKILL)
        rollout.wait(timeout=10)

        def all_gone() -> bool:
            return not any(is_running(b) for b in backends)

        wait_sync(all_gone, timeout_s=10, what=f"backends {[b.pid for b in backends]} to exit")
    finally:
        rollout.kill()
        rollout.wait(timeout=10)
        kill_if_running(backends)
