"""Golden sets kept in object storage: ``s3://bucket/key`` and ``gs://bucket/key``.

The bytes go to ``gate.golden.load_golden`` unchanged; this module only fetches them, with the
maintained clients: the MinIO SDK for S3 and S3-compatible stores (boto3 cannot be installed
beside this project's pinned python-dateutil 4) and google-cloud-storage for GCS.

- Credentials: the keys of a Secret the resource names in ``spec.goldenSet.credentialsSecret``
  (S3: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN``; GCS:
  ``service-account.json``, a service-account key), else the ambient ones: for S3 the IAM chain
  (IRSA web identity, ECS or EC2 instance role, then ``AWS_*`` variables), for GCS Application
  Default Credentials (workload identity); unsigned requests with ``anonymous``.
- Bounds: the object's size is checked before the download and the bytes are counted while
  they stream, so nothing larger than ``max_bytes`` is held; every request has a timeout,
  transport failures and 5xx/429 answers are retried a bounded number of times, and the whole
  fetch has a deadline.
- Errors: a missing object, refused credentials or a too-large set is a ``ConfigError`` (a
  human must act; the message names the field and the fix); a transport failure after the
  retries is a ``GoldenSourceError`` (an ``EdgeError``: the step is tried again). Messages never
  carry a credential.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tensorgate.errors import ConfigError, EdgeError
from tensorgate.settings import GoldenSourceOptions, redact_url

logger = logging.getLogger(__name__)

REMOTE_SCHEMES = ("s3://", "gs://")
CHUNK_BYTES = 1024 * 1024
RETRY_STATUSES = (429, 500, 502, 503, 504)
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
GCS_KEY = "service-account.json"
GCS_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
FIELD = "spec.goldenSet.uri"
LIMIT_FIX = "raise --golden-max-bytes (chart: goldenSets.maxBytes) or ship a smaller set"


class GoldenSourceError(EdgeError):
    """Object storage could not be reached (after the retries); trying later may work."""


@dataclass(frozen=True)
class ObjectRef:
    scheme: str
    """``s3`` or ``gs``."""
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names object storage this module fetches."""
    return uri.startswith(REMOTE_SCHEMES)


def parse_uri(uri: str) -> ObjectRef:
    """``s3://bucket/key`` or ``gs://bucket/key``; anything else is a ConfigError."""
    if not is_remote(uri):
        raise ConfigError(f"{FIELD} {uri!r}: expected s3://bucket/key or gs://bucket/key")
    scheme, rest = uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ConfigError(
            f"{FIELD} {uri!r}: name one object, e.g. {scheme}://bucket/golden/mnist.npz"
        )
    return ObjectRef(scheme, bucket, key)


class TooLargeError(ConfigError):
    """The golden set is larger than the operator's limit."""


class BoundedBuffer:
    """A write-only file object that refuses to hold more than ``max_bytes``."""

    def __init__(self, uri: str, max_bytes: int, deadline: float) -> None:
        self._uri = uri
        self._max = max_bytes
        self._deadline = deadline
        self._chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self._max:
            raise TooLargeError(
                f"{FIELD} {self._uri!r}: more than {self._max} bytes (the limit); {LIMIT_FIX}"
            )
        if time.monotonic() > self._deadline:
            raise GoldenSourceError(f"{FIELD} {self._uri!r}: download passed its deadline")
        self._chunks.append(bytes(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)


def _check_size(ref: ObjectRef, size: int | None, max_bytes: int) -> None:
    if size is not None and size > max_bytes:
        raise TooLargeError(
            f"{FIELD} {ref.uri!r}: {size} bytes > the limit {max_bytes}; {LIMIT_FIX}"
        )


def _text(credentials: Mapping[str, bytes], key: str) -> str | None:
    value = credentials.get(key)
    return None if value is None else value.decode().strip()


class GoldenSources:
    """Fetches ``s3://`` and ``gs://`` golden sets under one set of limits."""

    def __init__(self, options: GoldenSourceOptions | None = None) -> None:
        self.options = options or GoldenSourceOptions()

    async def fetch(
        self,
        uri: str,
        credentials: Mapping[str, bytes] | None = None,
        *,
        secret_name: str | None = None,
    ) -> bytes:
        """The object's bytes. ``credentials`` are a Secret's decoded data (None: ambient);
        ``secret_name`` is only used in messages."""
        ref = parse_uri(uri)
        o = self.options
        deadline = time.monotonic() + o.timeout_s * (o.retries + 1) * 2
        fetch = self._fetch_s3 if ref.scheme == "s3" else self._fetch_gcs
        where = f"Secret {secret_name!r}" if secret_name else "ambient credentials"
        started = time.monotonic()
        data = await asyncio.to_thread(fetch, ref, credentials, deadline, where)
        logger.info(
            "fetched golden set %s (%s bytes in %.1fs, %s)",
            ref.uri,
            len(data),
            time.monotonic() - started,
            where,
        )
        return data

    # --- S3 -------------------------------------------------------------------------------

    def _s3_client(self, credentials: Mapping[str, bytes] | None, where: str) -> Any:
        import urllib3
        from minio import Minio
        from minio.credentials.providers import (
            ChainedProvider,
            EnvAWSProvider,
            IamAwsProvider,
            Provider,
            StaticProvider,
        )

        o = self.options
        provider: Provider | None = None
        if credentials is not None:
            access, secret = (_text(credentials, k) for k in S3_KEYS)
            if not access or not secret:
                raise ConfigError(
                    f"spec.goldenSet.credentialsSecret: {where} needs the keys "
                    f"{' and '.join(S3_KEYS)} for s3:// (optional AWS_SESSION_TOKEN)"
                )
            provider = StaticProvider(access, secret, _text(credentials, "AWS_SESSION_TOKEN"))
        elif not o.anonymous:
            provider = ChainedProvider([IamAwsProvider(), EnvAWSProvider()])
        endpoint = o.s3_endpoint_url or "https://s3.amazonaws.com"
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"--golden-s3-endpoint {redact_url(endpoint)!r}: expected http(s)://host[:port]"
            )
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=o.timeout_s, read=o.timeout_s),
            retries=urllib3.Retry(
                total=o.retries,
                backoff_factor=o.backoff_s,
                status_forcelist=RETRY_STATUSES,
                allowed_methods=("GET", "HEAD"),
            ),
        )
        return Minio(
            parts.netloc.rsplit("@", 1)[-1],
            secure=parts.scheme == "https",
            # A fixed region skips GetBucketLocation (S3-compatible stores often lack it).
            region=o.s3_region or ("us-east-1" if o.s3_endpoint_url else None),
            http_client=http,
            credentials=provider,
        )

    def _fetch_s3(
        self,
        ref: ObjectRef,
        credentials: Mapping[str, bytes] | None,
        deadline: float,
        where: str,
    ) -> bytes:
        from minio.error import MinioException, S3Error
        from urllib3.exceptions import HTTPError

        client = self._s3_client(credentials, where)
        buffer = BoundedBuffer(ref.uri, self.options.max_bytes, deadline)
        try:
            stat = client.stat_object(ref.bucket, ref.key)
            _check_size(ref, stat.size, self.options.max_bytes)
            response = client.get_object(ref.bucket, ref.key)
            try:
                for chunk in response.stream(CHUNK_BYTES):
                    buffer.write(chunk)
            finally:
                response.close()
                response.release_conn()
        except S3Error as exc:
            raise self._s3_refused(ref, exc.code or "an error", where) from exc
        except MinioException as exc:
            raise self._s3_refused(ref, type(exc).__name__, where) from exc
        except ValueError as exc:  # the IAM chain found no credentials
            raise ConfigError(
                f"{FIELD} {ref.uri!r}: no AWS credentials (set spec.goldenSet.credentialsSecret, "
                "or give the operator an IAM role: IRSA or an instance profile)"
            ) from exc
        except (HTTPError, OSError) as exc:
            raise GoldenSourceError(
                f"{FIELD} {ref.uri!r}: S3 request failed after {self.options.retries} "
                f"retries: {type(exc).__name__}"
            ) from exc
        return buffer.getvalue()

    @staticmethod
    def _s3_refused(ref: ObjectRef, code: str, where: str) -> ConfigError:
        fixes = {
            "NoSuchKey": "no such object (or bucket)",
            "NoSuchBucket": "no such bucket",
            "AccessDenied": f"access denied with {where}",
            "InvalidAccessKeyId": f"the access key of {where} is not known",
            "SignatureDoesNotMatch": f"the secret key of {where} is wrong",
            "ExpiredToken": f"the session token of {where} has expired",
        }
        return ConfigError(f"{FIELD} {ref.uri!r}: {fixes.get(code, f'S3 answered {code}')}")

    # --- GCS ------------------------------------------------------------------------------

    def _gcs_client(self, credentials: Mapping[str, bytes] | None, where: str) -> Any:
        from google.auth import default as default_credentials
        from google.auth.credentials import AnonymousCredentials
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import storage
        from google.oauth2 import service_account

        o = self.options
        project: str | None = None
        creds: Any
        if credentials is not None:
            key = credentials.get(GCS_KEY)
            if key is None:
                raise ConfigError(
                    f"spec.goldenSet.credentialsSecret: {where} needs the key {GCS_KEY!r} "
                    "(a service-account key) for gs://"
                )
            try:
                info = json.loads(key)
                creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    info, scopes=[GCS_SCOPE]
                )
            except (ValueError, KeyError) as exc:
                raise ConfigError(
                    f"spec.goldenSet.credentialsSecret: key {GCS_KEY!r} of {where} is not a "
                    f"service-account key ({type(exc).__name__})"
                ) from None
            project = info.get("project_id")
        elif o.anonymous:
            creds, project = AnonymousCredentials(), "<none>"  # type: ignore[no-untyped-call]
        else:
            try:
                creds, project = default_credentials(scopes=[GCS_SCOPE])
            except DefaultCredentialsError as exc:
                raise ConfigError(
                    f"{FIELD}: no Google credentials for gs:// (set "
                    "spec.goldenSet.credentialsSecret, or give the operator workload identity)"
                ) from exc
        options = {"api_endpoint": o.gcs_endpoint_url} if o.gcs_endpoint_url else None
        return storage.Client(
            project=project or "<none>", credentials=creds, client_options=options
        )

    def _fetch_gcs(
        self,
        ref: ObjectRef,
        credentials: Mapping[str, bytes] | None,
        deadline: float,
        where: str,
    ) -> bytes:
        from google.api_core.exceptions import Forbidden, GoogleAPIError, NotFound, Unauthorized
        from google.auth.exceptions import GoogleAuthError
        from google.cloud.storage.retry import DEFAULT_RETRY
        from requests import RequestException

        o = self.options
        client = self._gcs_client(credentials, where)
        retry = DEFAULT_RETRY.with_timeout(o.timeout_s * (o.retries + 1))
        buffer = BoundedBuffer(ref.uri, o.max_bytes, deadline)
        try:
            blob = client.bucket(ref.bucket).get_blob(ref.key, timeout=o.timeout_s, retry=retry)
            if blob is None:
                raise ConfigError(f"{FIELD} {ref.uri!r}: no such object")
            _check_size(ref, blob.size, o.max_bytes)
            blob.download_to_file(buffer, timeout=o.timeout_s, retry=retry)
        except NotFound as exc:
            raise ConfigError(f"{FIELD} {ref.uri!r}: no such bucket or object") from exc
        except (Forbidden, Unauthorized) as exc:
            raise ConfigError(f"{FIELD} {ref.uri!r}: access denied with {where}") from exc
        except GoogleAuthError as exc:
            raise ConfigError(
                f"{FIELD} {ref.uri!r}: {where} could not be used ({type(exc).__name__})"
            ) from exc
        except (GoogleAPIError, RequestException, OSError) as exc:
            raise GoldenSourceError(
                f"{FIELD} {ref.uri!r}: GCS request failed: {type(exc).__name__}"
            ) from exc
        client.close()
        return buffer.getvalue()
