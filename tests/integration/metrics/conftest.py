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
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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
def running_prometheus(
    targets: dict[str, dict[str, str]],
    *,
    web_config: dict[str, Any] | None = None,
    ready_verify: ssl.SSLContext | bool = True,
    ready_auth: tuple[str, str] | None = None,
) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping ``{address: labels}`` every second; yields
    its URL and stops it (and deletes its data) afterwards. With ``web_config`` it is started
    with ``--web.config.file`` (TLS, basic auth) and serves https."""
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
    extra = []
    if web_config is not None:
        (workdir / "web.yml").write_text(yaml.safe_dump(web_config))
        extra.append(f"--web.config.file={workdir / 'web.yml'}")
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            *extra,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"{'https' if web_config else 'http'}://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"prometheus exited {proc.returncode}: "
                f"{(workdir / 'prometheus.log').read_text()[-2000:]}"
            )
        try:
            answer = httpx.get(f"{url}/-/ready", timeout=1, verify=ready_verify, auth=ready_auth)
            if answer.status_code == 401:
                raise AssertionError("prometheus refused the test's own credentials")
            return answer.status_code == 200
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


@dataclass(frozen=True)
class SecurePrometheus:
    """A real Prometheus that requires TLS (its own CA), a client certificate and basic auth."""

    url: str
    ca_file: Path
    other_ca_file: Path
    """A CA that did not sign the server's certificate."""
    cert_file: Path
    key_file: Path
    username: str
    password: str
    password_file: Path


SECURE_USER = "tensorgate"
SECURE_PASSWORD = "Planted-S3cret-4-leak-checks"


@pytest.fixture(scope="session")
def secure_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePrometheus]:
    """Prometheus started with ``--web.config.file``: ``tls_server_config`` (a server
    certificate from a CA made here, ``RequireAndVerifyClientCert``) and ``basic_auth_users``
    (a bcrypt hash), as the exporter-toolkit web configuration documents them."""
    from tests.integration.metrics.tls import CA, bcrypt_hash

    workdir = tmp_path_factory.mktemp("secure-prom")
    ca = CA.create(workdir, "tensorgate-test-ca")
    other = CA.create(workdir, "unrelated-ca")
    server_cert, server_key = ca.issue(workdir, "prometheus", server=True)
    client_cert, client_key = ca.issue(workdir, "tensorgate-operator", server=False)
    password_file = workdir / "password"
    password_file.write_text(SECURE_PASSWORD + "\n")
    web_config = {
        "tls_server_config": {
            "cert_file": str(server_cert),
            "key_file": str(server_key),
            "client_auth_type": "RequireAndVerifyClientCert",
            "client_ca_file": str(ca.cert_file),
        },
        "basic_auth_users": {SECURE_USER: bcrypt_hash(SECURE_PASSWORD)},
    }
    context = ssl.create_default_context(cafile=str(ca.cert_file))
    context.load_cert_chain(str(client_cert), str(client_key))
    with running_prometheus(
        {},
        web_config=web_config,
        ready_verify=context,
        ready_auth=(SECURE_USER, SECURE_PASSWORD),
    ) as url:
        yield SecurePrometheus(
            url,
            ca.cert_file,
            other.cert_file,
            client_cert,
            client_key,
            SECURE_USER,
            SECURE_PASSWORD,
            password_file,
        )
