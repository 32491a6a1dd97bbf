"""Prometheus access options without a real Prometheus: which header each option sends
(a recording HTTP server on loopback), option checks, and secrets kept out of messages.
The real TLS + basic-auth Prometheus: tests/integration/metrics/test_prometheus_auth.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tensorgate.cli import app
from tensorgate.errors import ConfigError, PrometheusError
from tensorgate.metrics.prometheus import PrometheusProvider, QueryRejectedError, check_options
from tensorgate.settings import PrometheusOptions, redact_url
from tests.helpers import serving


class _Recorder(BaseHTTPRequestHandler):
    server: _RecordingServer

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers.items()))
        if self.server.echo_400:  # a proxy that echoes the request back in its error page
            body = f"bad request: {dict(self.headers.items())}".encode()
            self.send_response(400)
        else:
            body = json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": []}}
            ).encode()
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True
    echo_400 = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def recorder() -> Iterator[_RecordingServer]:
    with serving(_RecordingServer()) as server:
        yield server


async def test_bearer_token_file_is_reread_per_request_and_headers_sent(
    recorder: _RecordingServer, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("tok-one\n")
    options = PrometheusOptions(bearer_token_file=str(token), headers=(("X-Scope-OrgID", "ml"),))
    p = PrometheusProvider(recorder.url, retries=0, timeout_s=2, options=options)
    await p.query("up")
    token.write_text("tok-two")  # a rotated Secret
    await p.query("up")
    await p.close()
    assert [h["Authorization"] for h in recorder.seen] == ["Bearer tok-one", "Bearer tok-two"]
    assert recorder.seen[0]["X-Scope-OrgID"] == "ml"


async def test_basic_auth_from_password_file(recorder: _RecordingServer, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    options = PrometheusOptions(username="me", password_file=str(tmp_path / "pw"))
    p = PrometheusProvider(recorder.url, retries=0, timeout_s=2, options=options)
    await p.query("up")
    await p.close()
    assert recorder.seen[0]["Authorization"] == "Basic bWU6czNjcmV0"  # base64("me:s3cret")


async def test_secret_echoed_by_a_server_is_masked_in_the_error(
    recorder: _RecordingServer, tmp_path: Path
) -> None:
    recorder.echo_400 = True
    (tmp_path / "token").write_text("Planted-Token-123")
    options = PrometheusOptions(bearer_token_file=str(tmp_path / "token"))
    p = PrometheusProvider(recorder.url, retries=0, timeout_s=2, options=options)
    with pytest.raises(QueryRejectedError) as caught:
        await p.query("up")
    await p.close()
    assert "Planted-Token-123" not in str(caught.value)
    assert "***" in str(caught.value)


async def test_password_in_url_never_in_transport_error() -> None:
    """Issue 12: ``prometheus query failed ... at http://user:pw@host`` went to status,
    Events and every line of rollout --local's timeline."""
    p = PrometheusProvider(
        "http://admin:Planted-Url-Pw@127.0.0.1:9", retries=0, timeout_s=1, backoff_s=0
    )
    assert p.url == "http://127.0.0.1:9"
    with pytest.raises(PrometheusError) as caught:
        await p.query("up")
    await p.close()
    assert "Planted-Url-Pw" not in str(caught.value)
    assert "http://127.0.0.1:9" in str(caught.value)


def test_redact_url_strips_only_userinfo() -> None:
    assert redact_url("https://u:p@h:9090/prom?x=1") == "https://h:9090/prom?x=1"
    assert redact_url("https://u@h") == "https://h"
    assert redact_url("http://h:9090") == "http://h:9090"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(
            PrometheusOptions(username="me"), "needs --prometheus-password-file", id="user-only"
        ),
        pytest.param(
            PrometheusOptions(password_file="/x"),
            "needs --prometheus-username",
            id="password-only",
        ),
        pytest.param(
            PrometheusOptions(username="me", password_file="/x", bearer_token_file="/y"),
            "not both",
            id="basic-and-bearer",
        ),
        pytest.param(
            PrometheusOptions(ca_file="/nonexistent/ca.pem"),
            "--prometheus-ca-file",
            id="missing-ca",
        ),
        pytest.param(
            PrometheusOptions(key_file="/k"), "needs --prometheus-cert-file", id="key-only"
        ),
        pytest.param(
            PrometheusOptions(bearer_token_file="/nonexistent/token"),
            "--prometheus-bearer-token-file",
            id="unreadable-token",
        ),
        pytest.param(
            PrometheusOptions(bearer_token_file="/etc/hostname", headers=(("Authorization", "x"),)),
            "conflicts",
            id="authorization-header-and-token",
        ),
    ],
)
def test_check_options_names_the_flag(options: PrometheusOptions, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        check_options(options)


def test_empty_password_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        check_options(PrometheusOptions(username="me", password_file=str(tmp_path / "pw")))


def test_run_refuses_bad_prometheus_flags_with_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "run",
            "--prometheus-url",
            "https://127.0.0.1:9090",
            "--prometheus-username",
            "me",
            "--prometheus-password-file",
            str(tmp_path / "missing"),
        ],
    )
    assert result.exit_code == 2
    assert "--prometheus-password-file" in result.output
    bad_header = runner.invoke(
        app, ["run", "--prometheus-url", "http://127.0.0.1:9", "--prometheus-header", "novalue"]
    )
    assert bad_header.exit_code == 2
    assert "NAME=VALUE" in bad_header.output
