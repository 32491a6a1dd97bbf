"""Golden-set sources without a server: URI parsing, the streaming bound, and the Kubernetes
platform's Secret handling (a fake API answering 403). The emulators:
tests/integration/golden_sources."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tensorgate.api.spec import parse_resource
from tensorgate.errors import ConfigError, KubeAPIError
from tensorgate.platform.golden_sources import (
    BoundedBuffer,
    GoldenSourceError,
    ObjectRef,
    TooLargeError,
    parse_uri,
)
from tensorgate.platform.kubernetes.platform import KubernetesPlatform
from tests.unit.api.test_crd_table import with_


def test_parse_uri_bucket_and_key() -> None:
    assert parse_uri("s3://b/golden/m.npz") == ObjectRef("s3", "b", "golden/m.npz")
    assert parse_uri("gs://b/m.npz").uri == "gs://b/m.npz"


@pytest.mark.parametrize("uri", ["s3://bucket", "gs://bucket/", "s3:///key", "gs://b/dir/"])
def test_parse_uri_without_an_object_names_the_field(uri: str) -> None:
    with pytest.raises(ConfigError, match=r"spec\.goldenSet\.uri .*name one object"):
        parse_uri(uri)


def test_bounded_buffer_refuses_past_the_limit() -> None:
    buffer = BoundedBuffer("s3://b/k", 10, time.monotonic() + 60)
    buffer.write(b"12345")
    buffer.write(b"67890")
    with pytest.raises(TooLargeError, match="more than 10 bytes"):
        buffer.write(b"!")
    assert buffer.getvalue() == b"1234567890"  # nothing past the limit was kept


def test_bounded_buffer_past_its_deadline_is_an_edge_error() -> None:
    buffer = BoundedBuffer("s3://b/k", 10, time.monotonic() - 1)
    with pytest.raises(GoldenSourceError, match="deadline"):
        buffer.write(b"1")


class ForbiddenKube:
    async def get(self, path: str) -> dict[str, Any] | None:
        raise KubeAPIError(f"GET {path}: 403 Forbidden", status=403)


async def test_forbidden_secret_names_the_chart_value() -> None:
    doc = with_("spec.goldenSet", {"uri": "s3://b/g.npz", "credentialsSecret": "s3-golden"})
    platform = KubernetesPlatform(ForbiddenKube())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"rbac\.goldenSetSecrets=true"):
        await platform.read_golden(doc, parse_resource(doc))
