"""Child processes that do not outlive the process that started them.

A ``tensorgate rollout --local`` killed from outside (a CI job's timeout sends SIGTERM or
SIGKILL) runs no ``finally``, so it cannot stop its serving backends itself. Two guards:

- :func:`spawn` starts every child through this module's ``__main__``, a tiny wrapper that
  asks Linux for SIGKILL when the parent dies (``prctl(PR_SET_PDEATHSIG)``), checks that the
  parent is still there, then ``exec``\\ s the command (same pid). The wrapper replaces a
  ``preexec_fn``, which is not safe in a process with threads.
- :func:`exit_with_parent`, for children that are our own Python programs: a daemon thread
  that ends the process once its parent is no longer ``parent_pid`` (any OS, and a second
  line on Linux).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_ORPHANED = 3  # the child found its parent gone
WATCH_INTERVAL_S = 1.0

Output = IO[bytes] | int | None


def spawn(
    argv: Sequence[str], *, stdout: Output = None, stderr: Output = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` so that it is SIGKILLed when this process dies (Linux).

    Call it from the main thread: the kernel sends the signal when the *thread* that started
    the child exits, and any other thread may exit before the process does.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "processes.spawn: call it from the main thread (PR_SET_PDEATHSIG fires when "
            "the starting thread exits, which would kill the child early)"
        )
    wrapper = [sys.executable, "-m", "tensorgate.processes", str(os.getpid()), *argv]
    return subprocess.Popen(wrapper, stdout=stdout, stderr=stderr)


def exit_with_parent(parent_pid: int, *, interval_s: float = WATCH_INTERVAL_S) -> threading.Thread:
    """End this process (exit status ``EXIT_ORPHANED``) once its parent is not ``parent_pid``.

    Checked every ``interval_s`` in a daemon thread; a parent gone before the call is found
    at the first check.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        print(
            f"tensorgate: parent process {parent_pid} is gone; exiting",
            file=sys.stderr,
            flush=True,
        )
        os._exit(EXIT_ORPHANED)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def _die_with_parent() -> None:
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def main(argv: Sequence[str]) -> int:
    """``python -m tensorgate.processes PARENT_PID COMMAND...``: what :func:`spawn` runs."""
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m tensorgate.processes PARENT_PID COMMAND...", file=sys.stderr)
        return 2
    _die_with_parent()
    if os.getppid() != int(argv[0]):  # the parent died before the signal was asked for
        print(f"tensorgate: parent process {argv[0]} is gone; not starting", file=sys.stderr)
        return EXIT_ORPHANED
    try:
        os.execvp(argv[1], list(argv[1:]))
    except OSError as exc:
        print(f"tensorgate: cannot run {argv[1]!r}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
