"""Shared test helpers: polling with a deadline, and failing (never skipping) when a part is missing."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
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
