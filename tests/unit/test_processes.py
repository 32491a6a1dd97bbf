"""``tensorgate.processes``: children that die with their parent, on real processes.

Each test starts a throwaway parent that starts one child and prints its pid, SIGKILLs the
parent, and waits (with a deadline) for the child to be gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tensorgate.processes import EXIT_ORPHANED, spawn
from tests.helpers import ProcessIdentity, identify, is_running, kill_if_running, wait_sync

# A throwaway parent: it starts a child, prints "pid N", and waits to be killed. The child
# (sharing its stdout) prints "ready" once it is what it will be, then would run 60 s.
SPAWNED = """
import time
from tensorgate.processes import spawn
child = spawn(["sh", "-c", "echo ready; exec sleep 60"])
print("pid", child.pid, flush=True)
time.sleep(60)
"""
# The child runs under plain Popen (no PR_SET_PDEATHSIG): only its watchdog can end it.
WATCHED = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import time
from tensorgate.processes import exit_with_parent
exit_with_parent(%d, interval_s=0.05)
print("ready", flush=True)
time.sleep(60)
''' % os.getpid()])
print("pid", child.pid, flush=True)
time.sleep(60)
"""


def _start_child_and_kill_its_parent(parent_code: str) -> ProcessIdentity:
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    with parent.stdout:
        try:
            lines = {parent.stdout.readline().strip() for _ in range(2)}  # either order
            (pid,) = (int(line.split()[1]) for line in lines if line.startswith("pid "))
            assert "ready" in lines, lines
            child = identify(pid)
        finally:
            parent.kill()
            parent.wait(timeout=10)
    return child


@pytest.mark.parametrize("parent_code", [SPAWNED, WATCHED], ids=["pdeathsig", "watchdog"])
def test_child_parent_sigkilled_child_exits(parent_code: str) -> None:
    child = _start_child_and_kill_its_parent(parent_code)
    try:
        wait_sync(lambda: not is_running(child), timeout_s=10, what=f"child {child.pid} to exit")
    finally:
        kill_if_running([child])


def test_wrapper_parent_already_gone_does_not_start_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    not_my_parent = str(os.getpid() + 1)  # the wrapper's parent is this test's process
    done = subprocess.run(
        [sys.executable, "-m", "tensorgate.processes", not_my_parent, "touch", str(marker)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == EXIT_ORPHANED, done.stderr
    assert "is gone; not starting" in done.stderr
    assert not marker.exists()


def test_spawn_off_main_thread_refused() -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            spawn(["true"])
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join(timeout=10)
    assert errors and "main thread" in str(errors[0])
