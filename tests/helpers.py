"""Shared test helpers: polling with a deadline, and failing (never skipping) when a part is missing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from socketserver import BaseServer
from typing import TypeVar

import pytest

T = TypeVar("T")
S = TypeVar("S", bound=BaseServer)


@contextlib.contextmanager
def serving(server: S) -> Iterator[S]:
    """Run a (loopback) ``socketserver`` server in a daemon thread; shut it down after."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def require(condition: bool, what: str, fix: str) -> None:
    """A missing component fails the test, with the fix in the message (never a skip:
    ``make test`` installs everything the tests need)."""
    if not condition:
        pytest.fail(f"{what} is missing: {fix}")


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float = 30.0,
    every_s: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns something truthy, or fail with what was last seen."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(every_s)


def wait_sync(
    probe: Callable[[], T | None],
    *,
    timeout_s: float = 30.0,
    every_s: float = 0.1,
    what: str = "condition",
) -> T:
    """Synchronous ``eventually``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)


@dataclass(frozen=True)
class ProcessIdentity:
    """A pid and its start time (``/proc/PID/stat`` field 22), so a reused pid is not it."""

    pid: int
    start: str


def _stat(pid: int) -> list[str] | None:
    """``/proc/PID/stat`` from field 3 (state) on; None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()  # field 2, the command name, may hold spaces


def identify(pid: int) -> ProcessIdentity:
    fields = _stat(pid)
    if fields is None:
        raise AssertionError(f"no process {pid}")
    return ProcessIdentity(pid, fields[19])


def child_processes(parent: int, module: str) -> list[ProcessIdentity]:
    """The running children of ``parent`` that are ``python -m <module> ...``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if fields is None or int(fields[1]) != parent or fields[0] in ("Z", "X"):
            continue
        if argv[1:3] == [b"-m", module.encode()]:
            found.append(ProcessIdentity(int(entry.name), fields[19]))
    return found


def is_running(process: ProcessIdentity) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait for a reaper that never comes)."""
    fields = _stat(process.pid)
    return fields is not None and fields[19] == process.start and fields[0] not in ("Z", "X")


def kill_if_running(processes: list[ProcessIdentity]) -> None:
    """SIGKILL what is left, so that a failed test leaves no process behind."""
    for process in processes:
        if is_running(process):
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
