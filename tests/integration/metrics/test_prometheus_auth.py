"""``PrometheusProvider`` against a real Prometheus that requires TLS, a client certificate
and basic auth (``--web.config.file``; see the ``secure_prometheus`` fixture).

Correct access measures; a wrong password, a wrong CA or a missing client certificate is a
failed check with a message that says what to fix, never a pass; the password never shows up
in a message or a log line.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tensorgate.api.spec import MetricCheck
from tensorgate.metrics.base import Target, Verdict
from tensorgate.metrics.checks import run_checks
from tensorgate.metrics.prometheus import PrometheusProvider
from tensorgate.settings import PrometheusOptions
from tests.integration.conftest import CANDIDATE, GOOD, ModelRepo
from tests.integration.metrics.conftest import SecurePrometheus

pytestmark = pytest.mark.prometheus

CHECK = MetricCheck(name="always-one", query="vector(1)", max=2)
TARGET = Target("ml", "mnist", "mnist", "canary", 10.0, (), "r1")


def full_access(p: SecurePrometheus) -> PrometheusOptions:
    return PrometheusOptions(
        ca_file=str(p.ca_file),
        cert_file=str(p.cert_file),
        key_file=str(p.key_file),
        username=p.username,
        password_file=str(p.password_file),
        headers=(("X-Scope-OrgID", "team-ml"),),
    )


@pytest.fixture
async def make(
    secure_prometheus: SecurePrometheus,
) -> AsyncIterator[list[PrometheusProvider]]:
    made: list[PrometheusProvider] = []
    yield made
    for provider in made:
        await provider.close()


def provider(
    made: list[PrometheusProvider], url: str, options: PrometheusOptions
) -> PrometheusProvider:
    p = PrometheusProvider(url, timeout_s=5, retries=1, backoff_s=0.05, options=options)
    made.append(p)
    return p


async def test_prometheus_with_tls_client_cert_and_basic_auth_measures(
    secure_prometheus: SecurePrometheus, make: list[PrometheusProvider]
) -> None:
    p = provider(make, secure_prometheus.url, full_access(secure_prometheus))
    assert await p.query("vector(1)") == [1.0]
    m = await p.measure(CHECK, TARGET)
    assert m.verdict == Verdict.MEASURED and m.value == 1.0


async def test_prometheus_wrong_password_is_a_failed_check_naming_the_fix(
    secure_prometheus: SecurePrometheus,
    make: list[PrometheusProvider],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("Planted-Wrong-Pw-77\n")
    options = replace(full_access(secure_prometheus), password_file=str(wrong))
    p = provider(make, secure_prometheus.url, options)
    caplog.set_level(logging.DEBUG)
    m = await p.measure(CHECK, TARGET)
    assert m.verdict == Verdict.ERROR
    assert m.message is not None and "refused the credentials (HTTP 401)" in m.message
    [result] = await run_checks({"prometheus": p}, [CHECK], canary=TARGET, stable=TARGET, weight=10)
    assert not result.passed
    texts = [m.message, result.message, caplog.text]
    for secret in ("Planted-Wrong-Pw-77", secure_prometheus.password):
        assert not any(secret in (t or "") for t in texts)


@pytest.mark.parametrize(
    "case",
    ["unrelated-ca", "system-ca", "no-client-certificate"],
)
async def test_prometheus_tls_failure_is_a_failed_check_naming_the_ca_flag(
    secure_prometheus: SecurePrometheus, make: list[PrometheusProvider], case: str
) -> None:
    options = full_access(secure_prometheus)
    if case == "unrelated-ca":
        options = replace(options, ca_file=str(secure_prometheus.other_ca_file))
    elif case == "system-ca":
        options = replace(options, ca_file=None)
    else:
        options = replace(options, cert_file=None, key_file=None)
    p = provider(make, secure_prometheus.url, options)
    m = await p.measure(CHECK, TARGET)
    assert m.verdict == Verdict.ERROR, m
    assert m.message is not None and "TLS handshake" in m.message
    assert "--prometheus-ca-file" in m.message
    assert secure_prometheus.password not in m.message


async def test_prometheus_credentials_in_url_are_used_but_never_printed(
    secure_prometheus: SecurePrometheus,
    make: list[PrometheusProvider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 12: ``http://user:pw@host`` was printed in every message; now the URL is kept
    without its userinfo, the credentials still authenticate, and a failure names the host
    only."""
    options = replace(full_access(secure_prometheus), username=None, password_file=None)
    host = secure_prometheus.url.removeprefix("https://")
    good = f"https://{secure_prometheus.username}:{secure_prometheus.password}@{host}"
    caplog.set_level(logging.DEBUG)
    p = provider(make, good, options)
    assert p.url == secure_prometheus.url
    assert await p.query("vector(1)") == [1.0]
    bad = provider(make, f"https://{secure_prometheus.username}:Planted-Url-Pw-9@{host}", options)
    m = await bad.measure(CHECK, TARGET)
    assert m.verdict == Verdict.ERROR and m.message and secure_prometheus.url in m.message
    for secret in ("Planted-Url-Pw-9", secure_prometheus.password):
        assert secret not in m.message
        assert secret not in caplog.text


def _rollout(tmp_path: Path, repo: ModelRepo, *args: str) -> subprocess.CompletedProcess[str]:
    files: list[str] = []
    metrics = [{"name": "always-one", "provider": "prometheus", "query": "vector(1)", "max": 2}]
    for version in (GOOD, CANDIDATE):
        path = tmp_path / f"v{version}.yaml"
        path.write_text(yaml.safe_dump(repo.manifest(version, metrics=metrics)))
        files += ["-f", str(path)]
    command = [sys.executable, "-m", "tensorgate.cli", "rollout", "--local", *files]
    return subprocess.run(
        [*command, "--deadline", "240", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.tf
def test_rollout_local_with_authenticated_prometheus_promotes_and_never_prints_secrets(
    tmp_path: Path, model_repo: ModelRepo, secure_prometheus: SecurePrometheus
) -> None:
    """``tensorgate rollout --local --prometheus URL`` with the CA, client certificate and
    basic-auth flags promotes; the same rollout with a wrong password in the URL (issue 12:
    printed 21 times) rolls back on the failed check and prints neither password."""
    p = secure_prometheus
    tls = [
        f"--prometheus-ca-file={p.ca_file}",
        f"--prometheus-cert-file={p.cert_file}",
        f"--prometheus-key-file={p.key_file}",
    ]
    good = _rollout(
        tmp_path,
        model_repo,
        f"--prometheus={p.url}",
        *tls,
        f"--prometheus-username={p.username}",
        f"--prometheus-password-file={p.password_file}",
    )
    assert good.returncode == 0, good.stderr[-3000:]
    assert "decision: promoted" in good.stdout
    host = p.url.removeprefix("https://")
    bad_url = f"https://{p.username}:Planted-Pw-21@{host}"
    bad = _rollout(tmp_path, model_repo, f"--prometheus={bad_url}", *tls, "--json")
    assert bad.returncode == 1, bad.stderr[-3000:]
    result = json.loads(bad.stdout)  # the timeline, the final status and every Event
    assert result["decision"] == "rolled back"
    messages = [c["message"] for c in result["status"]["conditions"]]
    messages += [e["message"] for e in result["events"]]
    assert any("refused the credentials (HTTP 401)" in m for m in messages), messages
    for out in (good.stdout, good.stderr, bad.stdout, bad.stderr):
        assert "Planted-Pw-21" not in out and p.password not in out
