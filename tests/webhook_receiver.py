"""A real HTTP webhook receiver on 127.0.0.1 (a free port) for integration and e2e tests.

Each path answers from a script of HTTP statuses (one per call, the last one repeated), or
hangs for ``hang_s`` before answering; every request is recorded (path, headers, body).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    scripts: dict[str, list[int]] = field(default_factory=dict)
    hang_s: dict[str, float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def answer(self, path: str, calls_before: int) -> int:
        script = self.scripts.get(path) or [200]
        return script[min(calls_before, len(script) - 1)]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """Serve on 127.0.0.1 (port 0: a free one) until the block ends."""
    receiver: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert receiver is not None
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            path = self.path.split("?", 1)[0]
            with receiver.lock:
                before = sum(1 for r in receiver.received if r.path == path)
                receiver.received.append(
                    Received(path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            if path in receiver.hang_s:
                time.sleep(receiver.hang_s[path])
            code = receiver.answer(path, before)
            try:
                self.send_response(code)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the caller gave up (a hook past its timeout)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
