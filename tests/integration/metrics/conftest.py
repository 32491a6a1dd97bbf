"""A real Prometheus (Debian's /usr/bin/prometheus) scraping stub TF Serving pods.

Each stub "pod" serves TF Serving's metric names on ``/monitoring/prometheus/metrics`` and adds
a fixed batch of requests every time it is scraped, so rates are steady and known. The scrape
config attaches ``namespace``, ``model`` and ``track`` labels to each target: what the
relabelling documented in ``tensorgate.metrics.templates`` does in a cluster.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import require, wait_sync

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
BOUNDS_US = [10 * 1.8**i for i in range(33)]
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StubPod:
    """Per scrape: ``ok`` and ``failed`` more requests, each successful one ``latency_us``."""

    ok: int
    failed: int
    latency_us: float
    model: str = "mnist"
    counts: dict[str, float] = field(default_factory=lambda: {"OK": 0.0})
    buckets: list[float] = field(default_factory=lambda: [0.0] * (len(BOUNDS_US) + 1))
    scrapes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def render(self) -> str:
        with self.lock:
            self.scrapes += 1
            self.counts["OK"] += self.ok
            if self.failed:
                self.counts["INTERNAL"] = self.counts.get("INTERNAL", 0.0) + self.failed
            for i, bound in enumerate(BOUNDS_US):
                if self.latency_us <= bound:
                    self.buckets[i] += self.ok
            self.buckets[-1] += self.ok
            lines = ["# TYPE :tensorflow:serving:request_count counter"]
            lines += [
                f':tensorflow:serving:request_count{{model_name="{self.model}",status="{s}"}} {v:g}'
                for s, v in sorted(self.counts.items())
            ]
            lines.append("# TYPE :tensorflow:serving:request_latency histogram")
            labels = f'model_name="{self.model}",API="Predict",entrypoint="REST"'
            for bound, n in zip(BOUNDS_US, self.buckets, strict=False):
                lines.append(
                    f':tensorflow:serving:request_latency_bucket{{{labels},le="{bound:g}"}} {n:g}'
                )
            lines.append(
                f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}} '
                f"{self.buckets[-1]:g}"
            )
            lines.append(
                f":tensorflow:serving:request_latency_count{{{labels}}} {self.buckets[-1]:g}"
            )
            lines.append(
                f":tensorflow:serving:request_latency_sum{{{labels}}} "
                f"{self.buckets[-1] * self.latency_us:g}"
            )
            return "\n".join(lines) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _PodServer

    def do_GET(self) -> None:
        if self.path != "/monitoring/prometheus/metrics":
            self.send_error(404)
            return
        body = self.server.pod.render().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _PodServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pod: StubPod) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pod = pod


@dataclass
class Cluster:
    """The stub pods by track, and the Prometheus scraping them."""

    url: str
    pods: dict[str, StubPod]


@contextlib.contextmanager
def running_prometheus(targets: dict[str, dict[str, str]]) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping ``{address: labels}`` every second; yields
    its URL and stops it (and deletes its data) afterwards."""
    require(
        Path(PROMETHEUS).exists(),
        "the prometheus server",
        "make system-deps (apt-get install prometheus)",
    )
    workdir = Path(tempfile.mkdtemp(prefix="tensorgate-prom-"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "tensorgate-serving",
                "metrics_path": "/monitoring/prometheus/metrics",
                "static_configs": [
                    {"targets": [address], "labels": labels} for address, labels in targets.items()
                ],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"prometheus exited {proc.returncode}: "
                f"{(workdir / 'prometheus.log').read_text()[-2000:]}"
            )
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_sync(ready, timeout_s=START_TIMEOUT_S, what="prometheus /-/ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def prometheus() -> Iterator[Cluster]:
    pods = {
        "canary": StubPod(ok=100, failed=5, latency_us=50_000),
        "stable": StubPod(ok=100, failed=0, latency_us=5_000),
        "idle": StubPod(ok=0, failed=0, latency_us=1_000),
    }
    servers = {track: _PodServer(pod) for track, pod in pods.items()}
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers.values()]
    for t in threads:
        t.start()
    targets = {
        f"127.0.0.1:{s.server_address[1]}": {"namespace": "ml", "model": "mnist", "track": track}
        for track, s in servers.items()
    }
    try:
        with running_prometheus(targets) as url:
            yield Cluster(url, pods)
    finally:
        for s in servers.values():
            s.shutdown()
            s.server_close()
