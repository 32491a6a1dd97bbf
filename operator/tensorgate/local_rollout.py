"""``tensorgate rollout --local``: the operator's engine and checks on local processes.

v1 is deployed (and becomes stable), then v2 goes through every phase as a canary while a
traffic source replays golden-set inputs as user requests (gRPC) through the local router,
honouring the step's weight, so every metric check has data (as Flagger's load tester does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tensorgate.api.reasons import Phase
from tensorgate.api.spec import ModelDeploymentSpec, parse_resource
from tensorgate.api.status import ModelDeploymentStatus
from tensorgate.checks import PlatformChecker
from tensorgate.engine.rollout import Event
from tensorgate.errors import ConfigError, TensorGateError
from tensorgate.gate.golden import load_golden
from tensorgate.metrics.factory import make_providers
from tensorgate.notify.webhooks import HttpWebhookSender
from tensorgate.platform.base import TrafficRouter
from tensorgate.platform.golden_sources import GoldenSources
from tensorgate.platform.local.platform import LocalPlatform, LocalRouter
from tensorgate.reconcile import Reconciler
from tensorgate.serving.base import ClientOptions, ModelClient
from tensorgate.settings import GoldenSourceOptions, PrometheusOptions

logger = logging.getLogger(__name__)

TERMINAL = {Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.PAUSED}
WEBHOOK_DRAIN_S = 5.0
USER_ENTRYPOINT = "REST"  # user traffic is REST; the gate talks gRPC


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class TimelineEntry:
    at_s: float
    version: str
    phase: str
    weight: int
    message: str
    checks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.at_s, 2),
            "version": self.version,
            "phase": self.phase,
            "weight": self.weight,
            "message": self.message,
            "checks": self.checks,
        }


@dataclass
class RolloutResult:
    decision: str
    timeline: list[TimelineEntry]
    status: dict[str, Any]
    user_requests: dict[str, int]
    canary_user_requests_served: int | None
    events: list[Event]

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "timeline": [t.to_dict() for t in self.timeline],
            "userRequests": self.user_requests,
            "canaryUserRequestsServed": self.canary_user_requests_served,
            "status": self.status,
            "events": [
                {
                    "reason": str(e.reason),
                    "message": e.message,
                    "type": "Warning" if e.warning else "Normal",
                }
                for e in self.events
            ],
        }


class TrafficSource:
    """Replays golden-set rows as user requests at ``rate_per_s``, split by the router."""

    def __init__(
        self,
        platform: LocalPlatform,
        router: LocalRouter,
        name: str,
        spec: ModelDeploymentSpec,
        inputs: dict[str, np.ndarray],
        *,
        rate_per_s: float,
        max_requests: int,
    ) -> None:
        self._platform, self._router, self._name, self._spec = platform, router, name, spec
        self._inputs = inputs
        self._rate = rate_per_s
        self._max = max_requests
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._clients: dict[str, tuple[str, ModelClient]] = {}

    async def _client(self, track: str) -> ModelClient | None:
        from tensorgate.serving.rest import RestModelClient

        served = self._platform.tracks.get((self._name, track))
        if served is None:
            return None
        target = f"http://{served.rest}"
        cached = self._clients.get(track)
        if cached is not None and cached[0] == target:
            return cached[1]
        if cached is not None:
            await cached[1].aclose()
        client = RestModelClient(
            target,
            self._spec.model.name,
            signature_name=self._spec.contract.signature,
            options=ClientOptions(timeout_s=5.0, retries=0),
        )
        self._clients[track] = (target, client)
        return client

    async def run(self, stop: asyncio.Event) -> None:
        n = next(iter(self._inputs.values())).shape[0]
        i = 0
        while not stop.is_set() and sum(self.sent.values()) < self._max:
            track = self._router.pick(self._name)
            client = await self._client(track)
            if client is not None:
                row = {k: v[i % n : i % n + 1] for k, v in self._inputs.items()}
                i += 1
                self.sent[track] += 1
                try:
                    await client.predict(row)
                except TensorGateError:
                    self.failed[track] += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0 / self._rate)
        for _, client in self._clients.values():
            await client.aclose()


def _body(doc: dict[str, Any], generation: int, status: dict[str, Any]) -> dict[str, Any]:
    meta = {
        **doc["metadata"],
        "namespace": doc["metadata"].get("namespace", "default"),
        "generation": generation,
        "uid": f"local-{doc['metadata']['name']}",
    }
    return {**doc, "metadata": meta, "status": status}


def user_requests_served(metrics_text: str | None, model_name: str) -> int | None:
    """Successful REST predicts a server answered (user traffic; the gate uses gRPC, and
    REST status/metadata GETs carry ``API=""``)."""
    if metrics_text is None:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if (
                s.name == ":tensorflow:serving:request_latency_count"
                and s.labels.get("model_name") == model_name
                and s.labels.get("entrypoint") == USER_ENTRYPOINT
                and s.labels.get("API") == "predict"
            ):
                total += s.value
    return int(total)


async def run_local_rollout(
    docs: list[dict[str, Any]],
    *,
    prometheus_url: str | None = None,
    prometheus_options: PrometheusOptions | None = None,
    golden_sources: GoldenSourceOptions | None = None,
    rate_per_s: float = 20.0,
    max_requests: int = 20_000,
    deadline_s: float = 600.0,
    on_entry: Callable[[TimelineEntry], None] | None = None,
) -> RolloutResult:
    """Apply each document in turn to one local model; the last one is the rollout judged."""
    if len(docs) < 2:
        raise ConfigError("rollout --local needs two manifests: the stable one, then the new one")
    specs = [parse_resource(d) for d in docs]
    names = {d["metadata"]["name"] for d in docs}
    if len(names) != 1:
        raise ConfigError(f"metadata.name: all manifests must name one model (got {sorted(names)})")
    name = names.pop()
    workdir = Path(tempfile.mkdtemp(prefix="tensorgate-local-"))
    platform = LocalPlatform(workdir, golden_sources=GoldenSources(golden_sources))
    router = LocalRouter()
    routers: dict[str, TrafficRouter] = {"replicas": router, "gateway-api": router}
    providers = make_providers(
        prometheus_url=prometheus_url, timeout_s=5.0, retries=2, prometheus=prometheus_options
    )
    webhooks = HttpWebhookSender()
    reconciler = Reconciler(
        platform, routers, PlatformChecker(platform, providers), WallClock(), webhooks=webhooks
    )
    started = time.monotonic()
    timeline: list[TimelineEntry] = []
    events: list[Event] = []
    status: dict[str, Any] = {}
    stop = asyncio.Event()
    traffic: TrafficSource | None = None
    traffic_task: asyncio.Task[None] | None = None
    try:
        for generation, (doc, spec) in enumerate(zip(docs, specs, strict=True), start=1):
            if generation == 2 and spec.golden_set is not None:
                golden = load_golden(
                    await platform.read_golden(_body(doc, 1, {}), spec),
                    spec.contract,
                    spec.golden_set,
                    require_labels=False,
                )
                traffic = TrafficSource(
                    platform,
                    router,
                    name,
                    spec,
                    dict(golden.inputs),
                    rate_per_s=rate_per_s,
                    max_requests=max_requests,
                )
                traffic_task = asyncio.create_task(traffic.run(stop))
            status = await _drive(
                reconciler, doc, generation, status, started, deadline_s, timeline, events, on_entry
            )
            if generation < len(docs) and status.get("phase") != Phase.PROMOTED:
                break
    finally:
        stop.set()
        if traffic_task is not None:
            await traffic_task
        await webhooks.drain(WEBHOOK_DRAIN_S)  # the last phase's event hooks go out
        await webhooks.aclose()
        await platform.aclose()
        for provider in providers.values():
            await provider.close()
    final = ModelDeploymentStatus.model_validate(status)
    version = specs[-1].model.version
    served = user_requests_served(
        platform.final_metrics.get(f"canary-v{version}")
        or platform.final_metrics.get(f"stable-v{version}"),
        specs[-1].model.name,
    )
    decision = {Phase.PROMOTED: "promoted", Phase.ROLLED_BACK: "rolled back"}.get(
        final.phase or Phase.FAILED, str(final.phase).lower()
    )
    if final.phase == Phase.PROMOTED and final.stable_version != version:
        decision = "failed"
    return RolloutResult(
        decision, timeline, status, dict(traffic.sent) if traffic else {}, served, events
    )


async def _drive(
    reconciler: Reconciler,
    doc: dict[str, Any],
    generation: int,
    status: dict[str, Any],
    started: float,
    deadline_s: float,
    timeline: list[TimelineEntry],
    events: list[Event],
    on_entry: Callable[[TimelineEntry], None] | None,
) -> dict[str, Any]:
    """Reconcile one generation until it reaches a terminal phase (or the deadline)."""
    version = doc["spec"]["model"]["version"]
    last: list[tuple[Any, ...]] = []

    def record(s: ModelDeploymentStatus) -> None:
        key = (s.phase, s.canary_weight, s.message)
        if last and last[-1] == key:
            return
        last.append(key)
        checks = [c.message for c in s.checks] if s.phase == Phase.PROGRESSING else []
        entry = TimelineEntry(
            time.monotonic() - started,
            version,
            str(s.phase),
            s.canary_weight or 0,
            s.message or "",
            checks,
        )
        timeline.append(entry)
        if on_entry:
            on_entry(entry)

    while True:
        outcome = await reconciler.reconcile(_body(doc, generation, status), record)
        status = outcome.status
        events.extend(outcome.events)
        s = ModelDeploymentStatus.model_validate(status)
        if (
            s.phase in TERMINAL
            and s.observed_generation == generation
            and (s.phase != Phase.PROMOTED or s.stable_version == version)
        ):
            return status
        if time.monotonic() - started > deadline_s:
            raise ConfigError(
                f"rollout did not finish within {deadline_s:.0f}s (phase {s.phase}: {s.message})"
            )
        if outcome.requeue_s != 0:
            await asyncio.sleep(min(outcome.requeue_s or 0.5, 0.5))
