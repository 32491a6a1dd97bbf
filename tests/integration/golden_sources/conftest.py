"""Object-storage emulators on loopback for golden-set fetching.

- S3: LocalBucket (PyPI ``localbucket``), a stdlib S3 server speaking the S3 REST API
  (path-style buckets, HEAD/GET object with ranges, S3 XML errors); it does not check
  signatures, so the handler here records each request's ``Authorization`` header to prove
  which credentials signed it. (moto's server mode cannot be installed beside this project's
  python-dateutil 4: moto and botocore require python-dateutil < 3.)
- GCS: ``gcp-storage-emulator``, which speaks the GCS JSON API the google-cloud-storage
  client uses (``client_options={"api_endpoint": ...}``).
- An OAuth token endpoint on loopback: a service-account key whose ``token_uri`` points here
  lets the real google-auth code sign in without reaching Google.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import require, serving
from tests.integration.metrics.conftest import free_port


def golden_npz(samples: int = 32) -> bytes:
    """A small labelled golden set as the gate reads it (pixels, labels)."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        pixels=rng.random((samples, 4), dtype=np.float32),
        labels=rng.integers(0, 3, samples),
    )
    return buffer.getvalue()


@dataclass
class S3Emulator:
    url: str
    root: Path
    authorizations: list[str] = field(default_factory=list)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        path = self.root / bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@pytest.fixture
def s3_emulator(tmp_path: Path) -> Iterator[S3Emulator]:
    try:
        import localbucket
    except ImportError:  # pragma: no cover
        require(False, "the localbucket S3 emulator", "pip install -e '.[dev]'")
    emulator = S3Emulator("", tmp_path / "s3")
    emulator.root.mkdir()

    class Handler(localbucket.S3Handler):  # type: ignore[misc,name-defined]
        data_root = emulator.root

        def _dispatch(self, *args: object) -> None:
            emulator.authorizations.append(self.headers.get("Authorization", ""))
            super()._dispatch(*args)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    emulator.url = f"http://127.0.0.1:{server.server_address[1]}"
    with serving(server):
        yield emulator


@dataclass
class GCSEmulator:
    url: str

    def put(self, bucket: str, key: str, data: bytes) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="test",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.url},
        )
        b = client.bucket(bucket)
        if not b.exists():
            client.create_bucket(bucket)
        b.blob(key).upload_from_string(data)
        client.close()


@pytest.fixture
def gcs_emulator() -> Iterator[GCSEmulator]:
    try:
        from gcp_storage_emulator.server import create_server
    except ImportError:  # pragma: no cover
        require(False, "the gcp-storage-emulator GCS emulator", "pip install -e '.[dev]'")
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield GCSEmulator(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


class _TokenHandler(BaseHTTPRequestHandler):
    server: TokenServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.server.requests.append(self.rfile.read(length).decode())
        body = json.dumps(
            {"access_token": "emulated-token", "expires_in": 3600, "token_type": "Bearer"}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class TokenServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/token"


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    with serving(TokenServer()) as server:
        yield server


def service_account_key(token_uri: str) -> bytes:
    """A service-account key (a fresh RSA key) whose token endpoint is ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "tensorgate-test",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": "golden-reader@tensorgate-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        }
    ).encode()
