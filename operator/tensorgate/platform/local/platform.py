"""The local platform: each track is a local serving backend process on 127.0.0.1.

Used by ``tensorgate rollout --local`` to run the same engine and the same checks as the
operator, without a cluster. Users' traffic goes through :class:`LocalRouter`, which
honours the canary weight like a weighted Service would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tensorgate.api.manifest_io import read_golden_file
from tensorgate.api.spec import ModelDeploymentSpec, ModelRef
from tensorgate.engine.rollout import TrackObservation
from tensorgate.errors import ConfigError, ServingError
from tensorgate.platform.base import Body
from tensorgate.platform.golden_sources import GoldenSources, is_remote
from tensorgate.processes import spawn

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 10.0


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def local_path(uri: str) -> Path:
    """Local runs serve plain paths only; cloud URIs need a cluster."""
    if not uri.startswith("/"):
        raise ConfigError(
            f"spec.model.uri {uri!r}: the local platform serves absolute paths only "
            "(got a remote URI; use a path such as /models/mnist)"
        )
    return Path(uri)


@dataclass
class LocalTrack:
    model: ModelRef
    process: subprocess.Popen[bytes]
    rest_port: int
    grpc_port: int
    log: Path

    @property
    def rest(self) -> str:
        return f"{HOST}:{self.rest_port}"

    @property
    def grpc(self) -> str:
        return f"{HOST}:{self.grpc_port}"


@dataclass
class LocalPlatform:
    """Implements ``Platform`` with one serving process per track."""

    workdir: Path
    python: str = sys.executable
    tracks: dict[tuple[str, str], LocalTrack] = field(default_factory=dict)
    final_metrics: dict[str, str] = field(default_factory=dict)
    golden_sources: GoldenSources = field(default_factory=GoldenSources)
    # What each track was asked for: (model, replicas, revision). One process serves a track
    # with any replicas > 0; zero replicas stops it (the track stays, as a Deployment would).
    wanted: dict[tuple[str, str], tuple[ModelRef, int, str | None]] = field(default_factory=dict)

    def _key(self, body: Body, track: str) -> tuple[str, str]:
        return (str(body["metadata"]["name"]), track)

    async def apply_track(
        self,
        body: Body,
        spec: ModelDeploymentSpec,
        track: str,
        model: ModelRef,
        replicas: int,
        *,
        revision: str | None = None,
    ) -> None:
        key = self._key(body, track)
        self.wanted[key] = (model, replicas, revision)
        if replicas == 0:
            await self._stop(key)
            return
        current = self.tracks.get(key)
        if current is not None and current.model == model and current.process.poll() is None:
            return
        if current is not None:
            await self._stop(key)
        base = local_path(model.uri)
        rest, grpc = free_port(), free_port()
        log = self.workdir / f"{key[0]}-{track}-v{model.version}.log"
        with log.open("wb") as out:
            proc = spawn(  # dies with this process, even when it is SIGKILLed
                [
                    self.python,
                    "-m",
                    "tensorgate.serving.backend",
                    "--model-name",
                    model.name,
                    "--model-base-path",
                    str(base),
                    "--version",
                    model.version,
                    "--host",
                    HOST,
                    "--rest-port",
                    str(rest),
                    "--grpc-port",
                    str(grpc),
                    "--parent-pid",
                    str(os.getpid()),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.tracks[key] = LocalTrack(model, proc, rest, grpc, log)
        logger.info("started %s track %s v%s on %s:%d", key[0], track, model.version, HOST, rest)

    async def delete_track(self, body: Body, track: str) -> None:
        self.wanted.pop(self._key(body, track), None)
        await self._stop(self._key(body, track))

    async def _stop(self, key: tuple[str, str]) -> None:
        track = self.tracks.pop(key, None)
        if track is None:
            return
        if track.process.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=2.0) as http:
                    resp = await http.get(f"http://{track.rest}/monitoring/prometheus/metrics")
                    self.final_metrics[f"{key[1]}-v{track.model.version}"] = resp.text
            track.process.terminate()
            try:
                await asyncio.to_thread(track.process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                track.process.kill()
                await asyncio.to_thread(track.process.wait, STOP_TIMEOUT_S)

    async def observe(self, body: Body, track: str) -> TrackObservation:
        key = self._key(body, track)
        wanted = self.wanted.get(key)
        if wanted is None:
            return TrackObservation()
        model, replicas, revision = wanted
        t = self.tracks.get(key)
        if t is None:  # scaled to zero
            return TrackObservation(exists=True, version=model.version, revision=revision)
        if t.process.poll() is not None:
            tail = t.log.read_text(errors="replace")[-300:]
            return TrackObservation(
                exists=True,
                version=t.model.version,
                revision=revision,
                desired=replicas,
                pods=replicas,
                unschedulable=f"server exited: {tail.strip()}",
            )
        ready = replicas if await self._available(t) else 0
        return TrackObservation(
            exists=True,
            version=t.model.version,
            revision=revision,
            desired=replicas,
            ready=ready,
            updated=replicas,
            pods=replicas,
        )

    async def _available(self, t: LocalTrack) -> bool:
        url = f"http://{t.rest}/v1/models/{t.model.name}/versions/{t.model.version}"
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                resp = await http.get(url)
        except httpx.HTTPError:
            return False
        if resp.status_code != 200:
            return False
        states = [v.get("state") for v in resp.json().get("model_version_status", [])]
        return "AVAILABLE" in states

    async def endpoints(self, body: Body, track: str) -> list[str]:
        t = self.tracks.get(self._key(body, track))
        if t is None or t.process.poll() is not None:
            return []
        return [t.rest]

    async def read_golden(self, body: Body, spec: ModelDeploymentSpec) -> bytes:
        golden = spec.golden_set
        if golden is None:
            raise ConfigError("spec.goldenSet: not set")
        if golden.uri is None:
            raise ConfigError("spec.goldenSet.configMapRef: needs a cluster; use uri: /path.npz")
        if is_remote(golden.uri):
            if golden.credentials_secret is not None:
                logger.warning(
                    "spec.goldenSet.credentialsSecret %r is read in a cluster only; "
                    "locally the ambient credentials fetch %s",
                    golden.credentials_secret,
                    golden.uri,
                )
            return await self.golden_sources.fetch(golden.uri)
        try:
            return read_golden_file(local_path(golden.uri), self.golden_sources.options.max_bytes)
        except OSError as exc:
            raise ConfigError(f"spec.goldenSet.uri {golden.uri!r}: {exc}") from exc

    def grpc_target(self, name: str, track: str) -> str | None:
        t = self.tracks.get((name, track))
        return None if t is None else t.grpc

    async def aclose(self) -> None:
        for key in list(self.tracks):
            await self._stop(key)


@dataclass
class LocalRouter:
    """Implements ``TrafficRouter`` for local runs: remembers each model's canary weight
    and picks a track per user request (a weighted Service in miniature)."""

    weights: dict[str, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    async def route(self, body: Body, spec: ModelDeploymentSpec, weight: int) -> None:
        self.weights[str(body["metadata"]["name"])] = weight

    def pick(self, name: str) -> str:
        weight = self.weights.get(name, 0)
        return "canary" if self.rng.uniform(0, 100) < weight else "stable"


def require_track(platform: LocalPlatform, name: str, track: str) -> LocalTrack:
    t = platform.tracks.get((name, track))
    if t is None:
        raise ServingError(f"{name}: no {track} track is running")
    return t
