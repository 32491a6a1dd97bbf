"""A bounded load generator: user requests spread over the pods the user Service selects.

Like Flagger's load tester, it gives every analysis step traffic to measure. It reads the
user-facing Service's selector and the tracks' endpoints (found as the operator finds them:
EndpointSlices, or Ready pods), and spreads requests over the selected tracks' endpoints
uniformly per pod, as kube-proxy would. Every address it dials is inside 127.0.0.0/8 in these
tests (asserted).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import numpy as np

from tensorgate.platform.kubernetes import manifests as m
from tensorgate.platform.kubernetes.platform import KubernetesPlatform
from tests.integration.operator.conftest import KubeEnv

MAX_REQUESTS = 5000
MAX_SECONDS = 300.0


async def _endpoints(kube: KubeEnv, name: str, track: str) -> list[str]:
    """Ready endpoints of a track as the cluster publishes them (EndpointSlices, else the
    Ready pods where an API server refuses their loopback IPs in EndpointSlices)."""
    body = {"metadata": {"name": name, "namespace": kube.namespace}}
    found = await KubernetesPlatform(kube.client).endpoints(body, track)
    for endpoint in found:
        assert ipaddress.ip_address(endpoint.rsplit(":", 1)[0]).is_loopback, endpoint
    return found


async def _run(
    kube: KubeEnv,
    name: str,
    model: str,
    rows: np.ndarray,
    input_name: str,
    stop: asyncio.Event,
    sent: Counter[str],
    rate_per_s: float,
) -> None:
    rng = random.Random(0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_SECONDS
    async with httpx.AsyncClient(timeout=5.0) as http:
        i = 0
        while not stop.is_set() and sum(sent.values()) < MAX_REQUESTS and loop.time() < deadline:
            svc = await kube.client.get(kube.path("v1", "Service", name))
            selector = ((svc or {}).get("spec") or {}).get("selector") or {}
            tracks = [selector[m.LABEL_TRACK]] if m.LABEL_TRACK in selector else list(m.TRACKS)
            pods = [(t, e) for t in tracks for e in await _endpoints(kube, name, t)]
            if pods:
                track, endpoint = rng.choice(pods)
                body = {"instances": rows[i % len(rows) : i % len(rows) + 1].tolist()}
                i += 1
                with contextlib.suppress(httpx.HTTPError):
                    await http.post(f"http://{endpoint}/v1/models/{model}:predict", json=body)
                    sent[track] += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0 / rate_per_s)


@contextlib.asynccontextmanager
async def load(
    kube: KubeEnv,
    name: str,
    model: str,
    rows: np.ndarray,
    input_name: str,
    rate_per_s: float = 20.0,
) -> AsyncIterator[Counter[str]]:
    """Send user traffic while the block runs; yields the per-track request counts."""
    stop = asyncio.Event()
    sent: Counter[str] = Counter()
    task = asyncio.create_task(_run(kube, name, model, rows, input_name, stop, sent, rate_per_s))
    try:
        yield sent
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)
