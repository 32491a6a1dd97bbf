"""The rollout's slow checks, over whatever platform runs the tracks.

Smoke inference and the golden-set comparison talk to a track's ready servers (found through
``Platform.endpoints``: EndpointSlices in a cluster, processes locally) over gRPC on TF
Serving's port 8500 by default, or REST (``spec.serving.gateProtocol: rest``); metric checks
go through the metrics providers. The same code serves the operator and
``tensorgate rollout --local``. No TensorFlow is imported here: the gRPC client uses the
project's own compiled protos.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from tensorgate.api.spec import ModelDeploymentSpec
from tensorgate.api.status import CheckResult, GateStatus
from tensorgate.errors import EdgeError, ServingError
from tensorgate.gate.golden import GoldenSet, load_golden
from tensorgate.gate.report import Check
from tensorgate.gate.runner import (
    GateConfig,
    compare_with,
    gate_status_fields,
    smoke_reasons,
    stable_signature_of,
)
from tensorgate.gate.smoke import run_smoke
from tensorgate.metrics.base import MetricsProvider, Target
from tensorgate.metrics.checks import begin_window, run_checks
from tensorgate.platform.base import Body, Platform
from tensorgate.platform.kubernetes.manifests import GRPC_PORT, REST_API_TIMEOUT_MS
from tensorgate.serving.base import ClientOptions, ModelClient, Signature
from tensorgate.serving.grpc import GrpcModelClient
from tensorgate.serving.rest import RestModelClient

logger = logging.getLogger(__name__)

GATE_REST_OPTIONS = ClientOptions(
    timeout_s=REST_API_TIMEOUT_MS / 1000 * 2 / 3, retries=2, batch_size=256
)
"""The gate's REST client: a request must finish well inside the pods'
``--rest_api_timeout_in_ms`` (a 256-sample batch takes milliseconds): it gives up at two
thirds of it."""
GATE_GRPC_OPTIONS = ClientOptions(
    timeout_s=REST_API_TIMEOUT_MS / 1000 * 2 / 3,
    retries=2,
    batch_size=8192,
    batch_bytes=6 * 1024 * 1024,
    concurrency=2,
)
"""The gate's gRPC client: requests of up to 6 MiB of inputs (2,006 rows of 784 float32),
two in flight per server, so the client packs the next while the server predicts
(benchmarks/gate_bench.py sweeps 512..8192 rows x 1, 2, 4 in flight: 2,048 x 2 was fastest
in most runs; one in flight leaves the server idle while the client packs, four or 8,192
rows only add memory; README, Benchmarks)."""


def grpc_address(platform: Platform, body: Body, track: str, rest_endpoint: str) -> str:
    """The gRPC ``host:port`` of a server ``Platform.endpoints`` lists by its REST address:
    the platform's own answer where it has one (local processes pick free ports), else the
    same host on TF Serving's gRPC port (``--port=8500`` in every serving pod)."""
    named = getattr(platform, "grpc_target", None)
    if callable(named):
        target = named(str(body["metadata"]["name"]), track)
        if isinstance(target, str) and target:
            return target
    host, _, _ = rest_endpoint.rpartition(":")
    return f"{host or rest_endpoint}:{GRPC_PORT}"


def _check(c: Check) -> CheckResult:
    return CheckResult(name=c.name, passed=c.passed, message=c.message)


class PlatformChecker:
    """Implements ``reconcile.Checker``."""

    def __init__(
        self,
        platform: Platform,
        providers: Mapping[str, MetricsProvider],
        options: ClientOptions | None = None,
    ) -> None:
        self._platform = platform
        self._providers = providers
        self._options = options or GATE_REST_OPTIONS
        self._grpc_options = options or GATE_GRPC_OPTIONS

    async def _client(
        self, body: Body, spec: ModelDeploymentSpec, track: str, version: str
    ) -> ModelClient:
        endpoints = await self._platform.endpoints(body, track)
        if not endpoints:
            raise ServingError(f"{track} track has no ready serving endpoints")
        if spec.serving.gate_protocol == "grpc":
            finder = getattr(self._platform, "grpc_endpoints", None)
            found = await finder(body, track) if callable(finder) else []
            return GrpcModelClient(
                found[0] if found else grpc_address(self._platform, body, track, endpoints[0]),
                spec.model.name,
                version=int(version),
                signature_name=spec.contract.signature,
                options=self._grpc_options,
            )
        return RestModelClient(
            f"http://{endpoints[0]}",
            spec.model.name,
            version=int(version),
            signature_name=spec.contract.signature,
            options=self._options,
        )

    async def _golden(self, body: Body, spec: ModelDeploymentSpec) -> GoldenSet | None:
        if spec.golden_set is None:
            return None
        data = await self._platform.read_golden(body, spec)
        return load_golden(data, spec.contract, spec.golden_set, slices=spec.analysis.slices)

    async def _stable_signature(self, body: Body, spec: ModelDeploymentSpec) -> Signature | None:
        version = str((body.get("status") or {}).get("stableVersion") or "")
        if not version.isdigit():
            return None  # the first rollout: nothing to diff against
        try:
            stable = await self._client(body, spec, "stable", version)
        except EdgeError:
            return None  # no stable endpoint to ask: the diff is left out
        try:
            return await stable_signature_of(stable, spec.contract.signature)
        finally:
            await stable.aclose()

    async def smoke(self, body: Body, spec: ModelDeploymentSpec, track: str) -> GateStatus:
        config = GateConfig.from_spec(spec)
        stable_signature = await self._stable_signature(body, spec)
        client = await self._client(body, spec, track, spec.model.version)
        try:
            golden = await self._golden(body, spec)
            result = await run_smoke(
                client,
                config.contract,
                config.smoke,
                golden,
                parity_tolerance=config.parity_tolerance,
                stable_signature=stable_signature,
            )
        finally:
            await client.aclose()
        report = result.report
        return GateStatus(
            version=spec.model.version,
            smoke_passed=report.passed,
            smoke=[_check(c) for c in report.checks],
            reasons=smoke_reasons(report),
            contract_diff=report.contract_diff.lines() if report.contract_diff else [],
        )

    async def compare(self, body: Body, spec: ModelDeploymentSpec, gate: GateStatus) -> GateStatus:
        golden = await self._golden(body, spec)
        if golden is None:
            return gate.model_copy(update={"compared": True, "decision": "promote"})
        config = GateConfig.from_spec(spec)
        stable_version = str((body.get("status") or {}).get("stableVersion") or "")
        stable = await self._client(body, spec, "stable", stable_version)
        candidate = await self._client(body, spec, "canary", spec.model.version)
        try:
            report = await compare_with(stable, candidate, golden, config)
        finally:
            await stable.aclose()
            await candidate.aclose()
        return gate.model_copy(update=gate_status_fields(report))

    async def _targets(self, body: Body, spec: ModelDeploymentSpec) -> tuple[Target, Target]:
        canary = Target.of(body, spec, "canary", await self._platform.endpoints(body, "canary"))
        stable = Target.of(body, spec, "stable", await self._platform.endpoints(body, "stable"))
        return canary, stable

    async def begin(self, body: Body, spec: ModelDeploymentSpec) -> None:
        canary, stable = await self._targets(body, spec)
        await begin_window(self._providers, spec.analysis.metrics, [canary, stable])

    async def analyse(
        self, body: Body, spec: ModelDeploymentSpec, weight: int
    ) -> list[CheckResult]:
        canary, stable = await self._targets(body, spec)
        return await run_checks(
            self._providers, spec.analysis.metrics, canary=canary, stable=stable, weight=weight
        )
