"""``s3://`` and ``gs://`` golden sets fetched with the real clients (MinIO SDK,
google-cloud-storage) from emulators on loopback, through both platforms' ``read_golden``."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest

from tensorgate.api.spec import ContractSpec, GoldenSetSpec, parse_resource
from tensorgate.errors import ConfigError
from tensorgate.gate.golden import load_golden
from tensorgate.platform import golden_sources
from tensorgate.platform.golden_sources import GoldenSourceError, GoldenSources, TooLargeError
from tensorgate.platform.kubernetes.client import KubeClient
from tensorgate.platform.kubernetes.platform import KubernetesPlatform
from tensorgate.platform.local.platform import LocalPlatform
from tensorgate.settings import GoldenSourceOptions
from tests.integration.golden_sources.conftest import (
    GCSEmulator,
    S3Emulator,
    TokenServer,
    golden_npz,
    service_account_key,
)

S3_SECRET = {"AWS_ACCESS_KEY_ID": b"AKIDGOLDENTEST", "AWS_SECRET_ACCESS_KEY": b"Planted-S3-Key"}
CONTRACT = ContractSpec.model_validate(
    {
        "inputs": {"pixels": {"dtype": "float32", "shape": [-1, 4]}},
        "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 3]}},
    }
)


def manifest(uri: str, secret: str | None = None) -> dict[str, Any]:
    golden: dict[str, Any] = {"uri": uri}
    if secret:
        golden["credentialsSecret"] = secret
    return {
        "apiVersion": "tensorgate.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "mnist", "namespace": "ml"},
        "spec": {
            "model": {"name": "mnist", "version": "1", "uri": "/models/mnist"},
            "contract": CONTRACT.to_dict(),
            "goldenSet": golden,
        },
    }


def sources(**options: Any) -> GoldenSources:
    return GoldenSources(
        GoldenSourceOptions(**{"timeout_s": 5, "retries": 1, "backoff_s": 0.05, **options})
    )


async def test_s3_golden_set_fetched_with_secret_credentials_loads_in_the_gate(
    s3_emulator: S3Emulator,
) -> None:
    data = golden_npz()
    s3_emulator.put("golden", "sets/mnist.npz", data)
    fetched = await sources(s3_endpoint_url=s3_emulator.url).fetch(
        "s3://golden/sets/mnist.npz", S3_SECRET, secret_name="s3-golden"
    )
    assert fetched == data
    golden = load_golden(fetched, CONTRACT, GoldenSetSpec(uri="s3://golden/sets/mnist.npz"))
    assert len(golden.labels) == 32
    # Signed (SigV4) with the Secret's access key, not sent anonymously.
    assert s3_emulator.authorizations
    assert all("Credential=AKIDGOLDENTEST/" in a for a in s3_emulator.authorizations)


async def test_s3_anonymous_requests_are_unsigned(s3_emulator: S3Emulator) -> None:
    s3_emulator.put("public", "g.npz", b"npz")
    got = await sources(s3_endpoint_url=s3_emulator.url, anonymous=True).fetch("s3://public/g.npz")
    assert got == b"npz"
    assert s3_emulator.authorizations == ["", ""]  # HEAD then GET, no Authorization


async def test_s3_missing_object_is_a_config_error_naming_the_field(
    s3_emulator: S3Emulator,
) -> None:
    with pytest.raises(ConfigError, match=r"spec\.goldenSet\.uri 's3://golden/nope.npz'"):
        await sources(s3_endpoint_url=s3_emulator.url).fetch("s3://golden/nope.npz", S3_SECRET)


async def test_s3_secret_without_keys_names_the_keys(s3_emulator: S3Emulator) -> None:
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        await sources(s3_endpoint_url=s3_emulator.url).fetch(
            "s3://golden/g.npz", {"token": b"x"}, secret_name="wrong"
        )


async def test_s3_object_over_the_limit_is_refused_before_download(
    s3_emulator: S3Emulator,
) -> None:
    s3_emulator.put("golden", "big.npz", b"x" * 5000)
    with pytest.raises(TooLargeError, match="5000 bytes > the limit 4096"):
        await sources(s3_endpoint_url=s3_emulator.url, max_bytes=4096).fetch(
            "s3://golden/big.npz", S3_SECRET
        )
    assert len(s3_emulator.authorizations) == 1  # the HEAD only: no GET of the body


async def test_s3_unreachable_endpoint_is_an_edge_error_after_bounded_retries() -> None:
    with pytest.raises(GoldenSourceError, match="S3 request failed after 1 retries"):
        await sources(s3_endpoint_url="http://127.0.0.1:9", timeout_s=1).fetch(
            "s3://golden/g.npz", S3_SECRET
        )


async def test_gcs_golden_set_fetched_anonymously_from_the_emulator(
    gcs_emulator: GCSEmulator,
) -> None:
    data = golden_npz()
    gcs_emulator.put("golden", "sets/mnist.npz", data)
    got = await sources(gcs_endpoint_url=gcs_emulator.url, anonymous=True).fetch(
        "gs://golden/sets/mnist.npz"
    )
    assert got == data


async def test_gcs_golden_set_with_a_service_account_secret_signs_in(
    gcs_emulator: GCSEmulator, token_server: TokenServer
) -> None:
    data = golden_npz()
    gcs_emulator.put("golden", "mnist.npz", data)
    secret = {"service-account.json": service_account_key(token_server.url)}
    got = await sources(gcs_endpoint_url=gcs_emulator.url).fetch(
        "gs://golden/mnist.npz", secret, secret_name="gcs-golden"
    )
    assert got == data
    # google-auth exchanged a JWT signed with the Secret's key for a token.
    assert token_server.requests and "assertion=" in token_server.requests[0]


async def test_gcs_missing_object_and_bad_key(gcs_emulator: GCSEmulator) -> None:
    gcs_emulator.put("golden", "other.npz", b"x")
    s = sources(gcs_endpoint_url=gcs_emulator.url, anonymous=True)
    with pytest.raises(ConfigError, match="no such"):
        await s.fetch("gs://golden/nope.npz")
    with pytest.raises(ConfigError, match="is not a service-account key"):
        await s.fetch("gs://golden/other.npz", {"service-account.json": b"{}"}, secret_name="x")


async def test_gcs_stream_is_cut_at_the_limit_even_when_the_size_is_not_known(
    gcs_emulator: GCSEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The byte count while streaming bounds memory even if the object's size was wrong."""
    gcs_emulator.put("golden", "big.npz", b"x" * 50_000)
    monkeypatch.setattr(golden_sources, "_check_size", lambda *a: None)
    with pytest.raises(TooLargeError, match="more than 4096 bytes"):
        await sources(gcs_endpoint_url=gcs_emulator.url, anonymous=True, max_bytes=4096).fetch(
            "gs://golden/big.npz"
        )


async def test_kubernetes_platform_reads_the_credentials_secret(
    kmock: kmock.KubernetesEmulator, s3_emulator: S3Emulator
) -> None:
    kmock.resources.load_bundled()
    conn = kopf.ConnectionInfo(server=str(kmock.url).rstrip("/"), insecure=True)
    client = KubeClient(conn, timeout_s=5, retries=1, backoff_s=0.05)
    data = golden_npz()
    s3_emulator.put("golden", "mnist.npz", data)
    try:
        await client.request(
            "POST",
            "/api/v1/namespaces/ml/secrets",
            body={
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s3-golden", "namespace": "ml"},
                "data": {k: base64.b64encode(v).decode() for k, v in S3_SECRET.items()},
            },
        )
        platform = KubernetesPlatform(
            client, GoldenSources(GoldenSourceOptions(s3_endpoint_url=s3_emulator.url))
        )
        doc = manifest("s3://golden/mnist.npz", secret="s3-golden")
        assert await platform.read_golden(doc, parse_resource(doc)) == data
        assert all("Credential=AKIDGOLDENTEST/" in a for a in s3_emulator.authorizations)
        missing = manifest("s3://golden/mnist.npz", secret="no-such-secret")
        with pytest.raises(ConfigError, match="Secret 'no-such-secret' not found"):
            await platform.read_golden(missing, parse_resource(missing))
    finally:
        await client.aclose()


async def test_local_platform_fetches_s3_golden_sets(
    s3_emulator: S3Emulator, tmp_path: Path
) -> None:
    s3_emulator.put("golden", "mnist.npz", b"npz-bytes")
    platform = LocalPlatform(
        tmp_path, golden_sources=sources(s3_endpoint_url=s3_emulator.url, anonymous=True)
    )
    doc = manifest("s3://golden/mnist.npz")
    assert await platform.read_golden(doc, parse_resource(doc)) == b"npz-bytes"
