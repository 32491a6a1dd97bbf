"""Session fixtures for the gate's integration tests: real SavedModels, real local serving.

Each family's variants are exported once per session as versions of one model base path and
served by one ``LocalModelServer`` (REST + gRPC on random 127.0.0.1 ports).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tensorgate.api.spec import ContractSpec
from tensorgate.gate.golden import GoldenSet, load_golden
from tensorgate.serving.base import ClientOptions, ModelClient
from tests.models import DIGITS, FRAUD, SHAPES, Family, bayes_outputs, build_family

GOLDEN_SAMPLES = 2000

FAMILY_VARIANTS: dict[str, tuple[Family, list[str] | None]] = {
    "digits": (DIGITS, None),
    "shapes": (SHAPES, ["good", "collapse", "batch-stats", "first-row-only"]),
    "fraud": (FRAUD, ["good", "collapse", "nan-rare"]),
}


@dataclass
class Served:
    family: Family
    server: object  # LocalModelServer
    versions: dict[str, int]
    contract: ContractSpec
    golden: GoldenSet
    golden_path: Path
    parity_golden: GoldenSet
    parity_golden_path: Path
    base: Path


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    from tensorgate.serving.backend import LocalModelServer

    root = tmp_path_factory.mktemp("gate-models")
    out: dict[str, Served] = {}
    servers = []
    try:
        for key, (family, variants) in FAMILY_VARIANTS.items():
            x, y = family.samples(GOLDEN_SAMPLES, seed=family.seed + 1000)
            base = root / family.name
            versions = build_family(base, family, x, variants)
            golden_path = root / f"{family.name}.npz"
            np.savez(golden_path, **{family.input_name: x, "labels": y})
            parity_path = root / f"{family.name}-parity.npz"
            np.savez(
                parity_path,
                **{
                    family.input_name: x,
                    "labels": y,
                    f"expected_{family.output_name}": bayes_outputs(family, x),
                },
            )
            contract = ContractSpec.model_validate(family.contract())
            server = LocalModelServer(family.name, base, versions=sorted(versions.values()))
            server.start()
            servers.append(server)
            out[key] = Served(
                family=family,
                server=server,
                versions=versions,
                contract=contract,
                golden=load_golden(golden_path, contract),
                golden_path=golden_path,
                parity_golden=load_golden(parity_path, contract),
                parity_golden_path=parity_path,
                base=base,
            )
        yield out
    finally:
        for server in servers:
            server.stop()


ClientFactory = Callable[[Served, str, str], ModelClient]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """make_client(served, variant, protocol) -> a client pinned to that variant's version."""
    clients: list[ModelClient] = []

    def make(entry: Served, variant: str, protocol: str) -> ModelClient:
        server = entry.server
        version = entry.versions[variant]
        options = ClientOptions(timeout_s=20.0, retries=1, backoff_s=0.05)
        client: ModelClient
        if protocol == "rest":
            from tensorgate.serving.rest import RestModelClient

            client = RestModelClient(
                server.rest_url,  # type: ignore[attr-defined]
                entry.family.name,
                version=version,
                options=options,
            )
        else:
            from tensorgate.serving.grpc import GrpcModelClient

            client = GrpcModelClient(
                server.grpc_target,  # type: ignore[attr-defined]
                entry.family.name,
                version=version,
                options=options,
            )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
