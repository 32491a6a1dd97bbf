"""``PrometheusProvider``: metric checks as PromQL instant queries (prometheus-api-client).

The client is synchronous (requests); every call runs in a worker thread with a per-request
timeout, and is retried a bounded number of times on transport errors and 5xx/429 answers.
A query Prometheus rejects (HTTP 400/422: bad PromQL) is not retried: ``query`` raises
``PrometheusError`` and ``measure`` returns a ``Verdict.ERROR`` measurement. So do refused
credentials (HTTP 401/403) and a failed TLS handshake (wrong CA, missing client certificate):
a check that cannot be read with the configured access is a failed check, never a pass.

Authentication and TLS come from one :class:`~tensorgate.settings.PrometheusOptions`: basic
auth or a bearer token read from files on every request, a CA bundle, an optional client
certificate, extra headers. Credentials in the URL (``http://user:pw@host``) are taken out of
it: only the redacted URL appears in messages, and known secret values are masked in any text
this module produces.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from requests.auth import AuthBase, _basic_auth_str
from urllib3.util.retry import Retry

from tensorgate.api.spec import MetricCheck
from tensorgate.errors import ConfigError, PrometheusError
from tensorgate.metrics.base import Measurement, Target, Verdict
from tensorgate.metrics.templates import builtin_query, render
from tensorgate.settings import PrometheusOptions, redact_url

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUSES = frozenset({401, 403})
_STATUS = re.compile(r"HTTP Status Code (\d{3})")
MASK = "***"

# Where each option is set, for error messages: the run/rollout flag and the chart value.
FLAGS = {
    "ca_file": "--prometheus-ca-file (chart: prometheus.tls.caSecret)",
    "cert_file": "--prometheus-cert-file (chart: prometheus.tls.clientCertSecret)",
    "key_file": "--prometheus-key-file (chart: prometheus.tls.clientCertSecret)",
    "password_file": "--prometheus-password-file (chart: prometheus.basicAuth.passwordSecret)",
    "bearer_token_file": "--prometheus-bearer-token-file (chart: prometheus.bearerToken.secret)",
}


class QueryRejectedError(PrometheusError):
    """Prometheus refused the query itself (bad PromQL): retrying cannot help."""

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


class AccessDeniedError(PrometheusError):
    """Prometheus could not be read with the configured access: refused credentials
    (HTTP 401/403, ``status`` set) or a failed TLS handshake (``status`` None)."""

    def __init__(self, message: str, status: int | None) -> None:
        self.status = status
        super().__init__(message)


def _read_secret(options: PrometheusOptions, name: str) -> str:
    path = getattr(options, name)
    try:
        text = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{FLAGS[name]}: cannot read {path!r} ({type(exc).__name__}: {exc.args[-1]})"
        ) from exc
    if not text:
        raise ConfigError(f"{FLAGS[name]}: {path!r} is empty")
    return text


def check_options(options: PrometheusOptions, *, url_has_credentials: bool = False) -> None:
    """Refuse contradictory or unreadable settings, naming the flag to fix."""
    if options.username and not options.password_file:
        raise ConfigError("--prometheus-username needs --prometheus-password-file")
    if options.password_file and not options.username:
        raise ConfigError("--prometheus-password-file needs --prometheus-username")
    if options.username and options.bearer_token_file:
        raise ConfigError(
            "set either --prometheus-username/--prometheus-password-file or "
            "--prometheus-bearer-token-file, not both (each sets the Authorization header)"
        )
    if url_has_credentials and (options.username or options.bearer_token_file):
        raise ConfigError(
            "the Prometheus URL carries credentials and so do the flags: "
            "take user:password@ out of the URL"
        )
    if options.key_file and not options.cert_file:
        raise ConfigError("--prometheus-key-file needs --prometheus-cert-file")
    if any(k.lower() == "authorization" for k, _ in options.headers) and (
        options.username or options.bearer_token_file or url_has_credentials
    ):
        raise ConfigError(
            "--prometheus-header Authorization=... conflicts with basic auth or a bearer token"
        )
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(options, name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{FLAGS[name]}: no such file {path!r}")
    for name in ("password_file", "bearer_token_file"):
        if getattr(options, name) is not None:
            _read_secret(options, name)


class FileAuth(AuthBase):
    """Basic auth or a bearer token whose secret is read from its file on every request
    (a rotated Secret is used at once), or a fixed user/password taken out of a URL."""

    def __init__(
        self, options: PrometheusOptions, url_credentials: tuple[str, str] | None = None
    ) -> None:
        self._options = options
        self._url_credentials = url_credentials
        self.secrets: set[str] = set()
        """Every secret value sent so far: masked in messages."""
        if url_credentials is not None:
            self.secrets.add(url_credentials[1])

    def header(self) -> str | None:
        o = self._options
        if o.bearer_token_file:
            token = _read_secret(o, "bearer_token_file")
            self.secrets.add(token)
            return f"Bearer {token}"
        if o.username and o.password_file:
            password = _read_secret(o, "password_file")
            self.secrets.add(password)
            return _basic_auth_str(o.username, password)
        if self._url_credentials is not None:
            return _basic_auth_str(*self._url_credentials)
        return None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        value = self.header()
        if value is not None:
            request.headers["Authorization"] = value
        return request


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``(url without userinfo, (user, password) or None)``."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    return redact_url(url), (unquote(parts.username), unquote(parts.password or ""))


def _status_of(exc: PrometheusApiClientException) -> int | None:
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def _short(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).replace("\\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_result(result: Any) -> list[float]:
    """Values of an instant query's ``data.result`` (vector, or scalar ``[ts, "v"]``)."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return [float(result[1])]
    values: list[float] = []
    for sample in result or []:
        if isinstance(sample, dict) and "values" in sample:  # resultType "matrix"
            raise QueryRejectedError(
                "query returned a range vector (a matrix, e.g. x[5m]); a check needs one "
                "instant value: aggregate it, e.g. sum(rate(x[{{interval}}]))",
                200,
            )
        value = sample.get("value") if isinstance(sample, dict) else None
        if not isinstance(value, list) or len(value) != 2:
            raise PrometheusError(f"unexpected sample in query result: {sample!r}"[:300])
        values.append(float(value[1]))
    return values


class PrometheusProvider:
    """Implements ``MetricsProvider`` against a Prometheus server's HTTP API."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        headers: dict[str, str] | None = None,
        options: PrometheusOptions | None = None,
    ) -> None:
        options = options or PrometheusOptions()
        clean, url_credentials = split_credentials(url.rstrip("/"))
        check_options(options, url_has_credentials=url_credentials is not None)
        if url_credentials is not None:
            logger.warning(
                "the Prometheus URL carries a password (readable in the process arguments): "
                "use --prometheus-username with --prometheus-password-file instead"
            )
        self.url = clean
        """The URL without credentials: the only form that is printed."""
        self._timeout_s = timeout_s
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._auth = FileAuth(options, url_credentials)
        session = requests.Session()
        session.verify = options.ca_file or True
        if options.cert_file:
            session.cert = (
                (options.cert_file, options.key_file) if options.key_file else options.cert_file
            )
        # Retries are ours (bounded, async backoff); the library's urllib3 retry is off.
        self._client = PrometheusConnect(
            url=self.url,
            headers={**(headers or {}), **dict(options.headers)},
            retry=Retry(total=0, raise_on_status=False),
            auth=self._auth,  # type: ignore[arg-type]  # requests takes any AuthBase
            session=session,
            timeout=timeout_s,  # type: ignore[arg-type]  # the library annotates int
        )

    def scrub(self, text: str) -> str:
        """``text`` with every secret value this provider has sent masked."""
        for secret in sorted(self._auth.secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, MASK)
        return text

    async def query(self, promql: str) -> list[float]:
        """Run an instant query; one float per returned series (empty: no data)."""
        attempt = 0
        while True:
            try:
                result = await asyncio.wait_for(
                    asyncio.to_thread(self._client.custom_query, promql),
                    timeout=self._timeout_s + 1.0,
                )
                return parse_result(result)
            except PrometheusApiClientException as exc:
                status = _status_of(exc)
                if status in AUTH_STATUSES:
                    raise AccessDeniedError(
                        f"prometheus at {self.url} refused the credentials (HTTP {status}): "
                        "check the username and password file or the bearer token file",
                        status,
                    ) from exc
                if status is not None and status not in RETRY_STATUSES:
                    raise QueryRejectedError(
                        self.scrub(f"prometheus rejected query (HTTP {status}): {_short(exc)}"),
                        status,
                    ) from exc
                error: Exception = exc
            except requests.exceptions.SSLError as exc:
                raise AccessDeniedError(
                    self.scrub(
                        f"prometheus TLS handshake with {self.url} failed: {_short(exc, 200)} "
                        f"(check {FLAGS['ca_file']} and the client certificate)"
                    ),
                    None,
                ) from exc
            except (requests.RequestException, TimeoutError, ValueError) as exc:
                error = exc
            attempt += 1
            if attempt > self._retries:
                raise PrometheusError(
                    self.scrub(
                        f"prometheus query failed after {attempt} attempt(s) at {self.url}: "
                        f"{_short(error)}"
                    )
                ) from error
            logger.debug(
                "prometheus query failed (attempt %s), retrying: %s",
                attempt,
                self.scrub(_short(error)),
            )
            await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))

    def promql(self, check: MetricCheck, target: Target) -> str:
        """The PromQL a check runs for a target."""
        if check.builtin is not None:
            return builtin_query(
                check.builtin,
                model=target.name,
                namespace=target.namespace,
                track=target.track,
                interval_s=target.interval_s,
            )
        assert check.query is not None
        return render(
            check.query,
            model=target.name,
            namespace=target.namespace,
            track=target.track,
            interval_s=target.interval_s,
        )

    async def measure(self, check: MetricCheck, target: Target) -> Measurement:
        started = datetime.now(UTC)
        promql = self.promql(check, target)
        try:
            values = await self.query(promql)
        except (QueryRejectedError, AccessDeniedError) as exc:
            return Measurement(None, Verdict.ERROR, started, datetime.now(UTC), str(exc))
        finished = datetime.now(UTC)
        if not values:
            return Measurement(
                None,
                Verdict.NO_DATA,
                started,
                finished,
                f"no series for track {target.track} in the last {target.interval_s:g}s",
            )
        if len(values) > 1:
            return Measurement(
                None,
                Verdict.ERROR,
                started,
                finished,
                f"query returned {len(values)} series; expected one (aggregate it, e.g. sum)",
            )
        value = values[0]
        if math.isnan(value):
            return Measurement(
                None,
                Verdict.NO_DATA,
                started,
                finished,
                f"no requests on track {target.track} in the last {target.interval_s:g}s (nan)",
            )
        return Measurement(value, Verdict.MEASURED, started, finished)

    async def begin(self, target: Target) -> None:
        """Nothing to do: Prometheus keeps the history, the window is the query's range."""

    async def close(self) -> None:
        await asyncio.to_thread(self._client.close)
