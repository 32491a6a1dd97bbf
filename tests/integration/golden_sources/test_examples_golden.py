"""The shipped examples' golden sets are read as written: mnist-gpu's gs:// set with its
``credentialsSecret`` (GCS emulator, a loopback token endpoint), cpu-pvc's ConfigMap."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import yaml

from tensorgate.api.spec import parse_resource
from tensorgate.gate.golden import load_golden
from tensorgate.platform.golden_sources import GoldenSources, parse_uri
from tensorgate.platform.kubernetes.client import KubeClient
from tensorgate.platform.kubernetes.platform import KubernetesPlatform
from tensorgate.settings import GoldenSourceOptions
from tests.integration.golden_sources.conftest import (
    GCSEmulator,
    TokenServer,
    service_account_key,
)

ROOT = Path(__file__).resolve().parents[3]


def example(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / name).read_text())
    assert isinstance(doc, dict)
    return doc


def npz_for(doc: dict[str, Any], samples: int = 16) -> bytes:
    """A golden set with the example contract's single input and integer labels."""
    import io

    import numpy as np

    spec = parse_resource(doc)
    [(name, tensor)] = spec.contract.inputs.items()
    golden = spec.golden_set
    assert golden is not None
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    arrays = {
        golden.features or name: rng.random((samples, tensor.shape[1]), dtype=np.float32),
        golden.labels: rng.integers(0, 2, samples),
    }
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.fixture
async def kube(kmock: kmock.KubernetesEmulator) -> AsyncIterator[KubeClient]:
    kmock.resources.load_bundled()
    conn = kopf.ConnectionInfo(server=str(kmock.url).rstrip("/"), insecure=True)
    client = KubeClient(conn, timeout_s=5, retries=1, backoff_s=0.05)
    yield client
    await client.aclose()


async def create(client: KubeClient, plural: str, body: dict[str, Any]) -> None:
    ns = body["metadata"]["namespace"]
    await client.request("POST", f"/api/v1/namespaces/{ns}/{plural}", body=body)


async def test_mnist_gpu_example_golden_set_is_fetched_with_its_secret(
    kube: KubeClient, gcs_emulator: GCSEmulator, token_server: TokenServer
) -> None:
    doc = example("mnist-gpu.yaml")
    spec = parse_resource(doc)
    assert spec.golden_set is not None and spec.golden_set.uri is not None
    ref = parse_uri(spec.golden_set.uri)
    data = npz_for(doc)
    gcs_emulator.put(ref.bucket, ref.key, data)
    await create(
        kube,
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": spec.golden_set.credentials_secret, "namespace": "ml"},
            "data": {
                "service-account.json": base64.b64encode(
                    service_account_key(token_server.url)
                ).decode()
            },
        },
    )
    platform = KubernetesPlatform(
        kube, GoldenSources(GoldenSourceOptions(gcs_endpoint_url=gcs_emulator.url, timeout_s=5))
    )
    got = await platform.read_golden(doc, spec)
    assert got == data
    assert len(load_golden(got, spec.contract, spec.golden_set).labels) == 16
    assert token_server.requests  # signed in with the Secret's key


async def test_cpu_pvc_example_golden_set_is_read_from_its_configmap(kube: KubeClient) -> None:
    doc = example("cpu-pvc.yaml")
    spec = parse_resource(doc)
    assert spec.golden_set is not None and spec.golden_set.config_map_ref is not None
    ref = spec.golden_set.config_map_ref
    data = npz_for(doc)
    await create(
        kube,
        "configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": ref.name, "namespace": "ml"},
            "binaryData": {ref.key: base64.b64encode(data).decode()},
        },
    )
    got = await KubernetesPlatform(kube).read_golden(doc, spec)
    assert got == data
    assert len(load_golden(got, spec.contract, spec.golden_set).labels) == 16
