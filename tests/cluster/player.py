"""The pod player: what a kubelet's container runtime and readiness probe do for TF Serving pods.

kwok runs the test cluster's nodes and reports TF Serving pods (label
``app.kubernetes.io/name=tfserving``) Running with a pod IP in 127.0.0.0/8, but not Ready
(tests/cluster/tfserving-stage.yaml). For each such pod the player starts the project's local
serving backend as a subprocess on ``podIP:8500`` (gRPC) and ``podIP:8501`` (REST), serving what
real TF Serving would: the pod's ``--model_config_file``, read from the ConfigMap volume that
holds it (``base_path`` mapped through a URI map to a local folder), which wins over
``--model_name`` / ``--model_base_path`` as in TF Serving's ``model_servers/main.cc`` and
``server.cc``; so a wrong generated model config fails the tests. The pod's
``--rest_api_timeout_in_ms``, ``--enable_grpc_healthcheck_service`` and
``--enable_serialization_as_tensor_content`` are passed on. A pod without a config file is
served from ``--model_name`` / ``--model_base_path`` pinned to its ``tensorgate.dev/version``. When the backend prints
its ready line the player sets the pod's ``Ready`` and ``ContainersReady`` conditions and every
``containerStatuses[].ready`` (read the pod, modify, PUT the whole status to ``pods/status``),
as a passing readiness probe would. A backend that fails to load leaves its pod unready (the
reason is logged and kept in ``PodPlayer.failures``). When the pod goes, or gets a
``deletionTimestamp``, its backend is stopped; every backend is stopped when the player stops.

The player polls (``interval_s``) instead of watching: simple, and bounded in time by the
caller's stop event and ``max_runtime_s``.

Run it next to a cluster (``--example-models`` builds the examples' model once and maps
their URIs; ``--uri-map`` adds more)::

    python -m tests.cluster.player --kubeconfig .cluster/kubeconfig \\
        --example-models /tmp/tensorgate-models --uri-map '{"s3://b/m": "/tmp/m"}'

or in-process: ``PodPlayer(...).start_thread()`` / ``.stop_thread()`` (the e2e fixtures).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import ipaddress
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import yaml

from tensorgate.errors import KubeAPIError
from tensorgate.platform.kubernetes.client import KubeClient
from tensorgate.serving.backend import READY_WORD

log = logging.getLogger("tests.cluster.player")

PLAYER_LABEL = "app.kubernetes.io/name=tfserving"
VERSION_LABEL = "tensorgate.dev/version"
GRPC_PORT, REST_PORT = 8500, 8501
LOAD_TIMEOUT_S = 120.0
STOP_GRACE_S = 5.0
MAX_RUNTIME_S = 6 * 3600.0


def connection_from_kubeconfig(path: str | os.PathLike[str]) -> kopf.ConnectionInfo:
    """The current context's server and credentials (inline or file certificates, token)."""
    config = yaml.safe_load(Path(path).read_text())
    current = config.get("current-context")
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in config.get("users") or [] if u["name"] == ctx["user"]), {})
    base = Path(path).resolve().parent

    def _file(key: str) -> str | None:
        value = cluster.get(key) if key.startswith("certificate-authority") else user.get(key)
        return None if value is None else str(base / value)

    def _data(value: str | None) -> bytes | None:
        return None if value is None else base64.b64decode(value)

    return kopf.ConnectionInfo(
        server=cluster["server"],
        ca_path=_file("certificate-authority"),
        ca_data=_data(cluster.get("certificate-authority-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=user.get("token"),
        certificate_path=_file("client-certificate"),
        certificate_data=_data(user.get("client-certificate-data")),
        private_key_path=_file("client-key"),
        private_key_data=_data(user.get("client-key-data")),
        default_namespace=ctx.get("namespace"),
    )


def map_uri(uri: str, uri_map: Mapping[str, str]) -> str:
    """The local folder for a model base path: the longest mapped prefix wins; unmapped
    plain paths map to themselves."""
    for prefix in sorted(uri_map, key=len, reverse=True):
        if uri == prefix or uri.startswith(prefix.rstrip("/") + "/"):
            return uri_map[prefix] + uri[len(prefix) :]
    return uri


def _arg(args: list[str], flag: str) -> str | None:
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"--{flag}=")), None)


PASSED_FLAGS = (
    "rest_api_timeout_in_ms",
    "enable_grpc_healthcheck_service",
    "enable_serialization_as_tensor_content",
)
_BASE_PATH = re.compile(r'(base_path:\s*")([^"]*)(")')
_VERSION = re.compile(r"specific\s*\{\s*versions:\s*([0-9]+)")


def config_map_file(pod: Mapping[str, Any], path: str) -> tuple[str, str] | None:
    """(ConfigMap name, key) of the pod volume that holds ``path`` in its first container."""
    folder, _, key = path.rpartition("/")
    container = pod["spec"]["containers"][0]
    mount = next(
        (v for v in container.get("volumeMounts") or [] if v["mountPath"].rstrip("/") == folder),
        None,
    )
    if mount is None:
        return None
    volume = next((v for v in pod["spec"].get("volumes") or [] if v["name"] == mount["name"]), {})
    name = (volume.get("configMap") or {}).get("name")
    return (str(name), key) if name else None


def map_model_config(text: str, uri_map: Mapping[str, str]) -> tuple[str, list[str], str | None]:
    """The model config with every ``base_path`` mapped to its local folder; also the local
    folders and the pinned version (None when the config pins none)."""
    folders: list[str] = []

    def local(match: re.Match[str]) -> str:
        folders.append(map_uri(match[2], uri_map))
        return f"{match[1]}{folders[-1]}{match[3]}"

    mapped = _BASE_PATH.sub(local, text)
    version = _VERSION.search(text)
    return mapped, folders, version[1] if version else None


def _write_config(text: str) -> str:
    handle, path = tempfile.mkstemp(prefix="tensorgate-player-", suffix=".config")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    return path


def _remove(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            Path(path).unlink()


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_ready(pod: Mapping[str, Any]) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def set_ready(pod: dict[str, Any], ready: bool) -> dict[str, Any]:
    """The pod with its readiness set as a kubelet reports a readiness probe's result."""
    status = pod.setdefault("status", {})
    now = _now()
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    conditions = status.setdefault("conditions", [])
    for kind in ("ContainersReady", "Ready"):
        cond = next((c for c in conditions if c.get("type") == kind), None)
        if cond is None:
            cond = {"type": kind}
            conditions.append(cond)
        if cond.get("status") != ("True" if ready else "False"):
            cond["lastTransitionTime"] = now
        cond["status"] = "True" if ready else "False"
        if ready:
            cond.pop("reason", None)
            cond.pop("message", None)
        else:
            cond["reason"] = "ContainersNotReady"
            cond["message"] = f"containers with unready status: {names}"
    for cs in status.get("containerStatuses") or []:
        cs["ready"] = ready
    return pod


@dataclass
class Backend:
    """One local serving backend process playing one pod's TF Serving container."""

    key: str  # namespace/name/uid
    ip: str
    process: asyncio.subprocess.Process
    ready: bool = False
    failed: str | None = None
    stderr: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=20))
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await asyncio.wait_for(self.process.wait(), timeout=STOP_GRACE_S)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class PodPlayer:
    """Plays the TF Serving containers of every matching pod the client can see."""

    def __init__(
        self,
        connection: kopf.ConnectionInfo,
        uri_map: Mapping[str, str] | None = None,
        *,
        label_selector: str = PLAYER_LABEL,
        interval_s: float = 0.25,
        python: str = sys.executable,
        load_timeout_s: float = LOAD_TIMEOUT_S,
    ) -> None:
        self._connection = connection
        self.uri_map = dict(uri_map or {})
        self._selector = label_selector
        self._interval_s = interval_s
        self._python = python
        self._load_timeout_s = load_timeout_s
        self.backends: dict[str, Backend] = {}
        self.failures: dict[str, str] = {}  # pod key -> why its backend did not load
        self.started_total = 0
        self._config_files: list[str] = []
        self._client: KubeClient | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- one pass --------------------------------------------------------------------------

    async def step(self) -> None:
        assert self._client is not None
        pods = await self._client.list("/api/v1/pods", self._selector)
        live: set[str] = set()
        for pod in pods:
            meta, status = pod["metadata"], pod.get("status") or {}
            key = f"{meta['namespace']}/{meta['name']}/{meta['uid']}"
            ip = status.get("podIP")
            if meta.get("deletionTimestamp") or status.get("phase") != "Running" or not ip:
                continue
            live.add(key)
            backend = self.backends.get(key)
            if backend is None:
                if key not in self.failures:
                    await self._start(key, pod, ip)
                continue
            if backend.ready and not _is_ready(pod):
                await self._report(pod, ready=True)
            elif backend.failed is not None and _is_ready(pod):
                await self._report(pod, ready=False)  # it served, then died: probe fails
            elif (
                not backend.ready
                and backend.failed is None
                and time.monotonic() - backend.started > self._load_timeout_s
            ):
                self._fail(backend, f"not ready after {self._load_timeout_s:.0f}s")
                await backend.stop()
        for key in set(self.backends) - live:
            backend = self.backends.pop(key)
            log.info("pod %s gone: stopping its backend on %s", key, backend.ip)
            await backend.stop()
        for key in set(self.failures) - live:
            self.failures.pop(key)

    async def _start(self, key: str, pod: dict[str, Any], ip: str) -> None:
        if not ipaddress.ip_address(ip).is_loopback:
            self._record_failure(key, f"pod IP {ip} is outside 127.0.0.0/8: not played")
            return
        container = pod["spec"]["containers"][0]
        args = list(container.get("args") or [])
        name, base = _arg(args, "model_name"), _arg(args, "model_base_path")
        config_path = _arg(args, "model_config_file")
        version = (pod["metadata"].get("labels") or {}).get(VERSION_LABEL)
        if config_path is None and not (name and base and version):
            self._record_failure(
                key,
                f"needs --model_config_file, or --model_name, --model_base_path and "
                f"label {VERSION_LABEL}",
            )
            return
        # A pod IP freed by a deleted pod may be handed to a new one: its old server goes first.
        for other_key, other in list(self.backends.items()):
            if other.ip == ip:
                log.info("pod IP %s reused: stopping the backend of %s", ip, other_key)
                await self.backends.pop(other_key).stop()
        passed = [f"--{flag}={value}" for flag in PASSED_FLAGS if (value := _arg(args, flag))]
        cmd = [
            self._python,
            "-m",
            "tensorgate.serving.backend",
            f"--host={ip}",
            f"--rest_api_port={REST_PORT}",
            f"--port={GRPC_PORT}",
            *passed,
        ]
        if config_path is not None:
            served = await self._model_config(key, pod, config_path)
            if served is None:
                return
            config_file, local, version = served
            cmd += [f"--model_name={name or 'default'}", f"--model_config_file={config_file}"]
        else:
            assert base is not None and version is not None
            local = map_uri(base, self.uri_map)
            cmd += [f"--model_name={name}", f"--model_base_path={local}", f"--version={version}"]
        if version and not await asyncio.to_thread(Path(local, version).is_dir):
            # What TF Serving would log before its readiness probe fails forever.
            self._record_failure(key, f"no version {version} under {local} (model URI {base})")
            return
        log.info("pod %s: serving %s v%s from %s on %s", key, name, version, local, ip)
        process = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
            start_new_session=True,
        )
        backend = Backend(key, ip, process)
        backend.tasks = [
            asyncio.create_task(self._read_stdout(backend)),
            asyncio.create_task(self._read_stderr(backend)),
        ]
        self.backends[key] = backend
        self.started_total += 1

    async def _model_config(
        self, key: str, pod: dict[str, Any], path: str
    ) -> tuple[str, str, str | None] | None:
        """The pod's model config, from its ConfigMap, written locally with mapped base
        paths: (local config file, local model folder, pinned version); None when the pod
        cannot start (recorded as its failure, as a kubelet would leave it)."""
        assert self._client is not None
        where = config_map_file(pod, path)
        if where is None:
            self._record_failure(key, f"--model_config_file {path}: no ConfigMap volume holds it")
            return None
        namespace = pod["metadata"]["namespace"]
        cm = await self._client.get(f"/api/v1/namespaces/{namespace}/configmaps/{where[0]}")
        text = ((cm or {}).get("data") or {}).get(where[1])
        if text is None:
            self._record_failure(key, f"ConfigMap {where[0]} has no key {where[1]}")
            return None
        mapped, folders, version = map_model_config(text, self.uri_map)
        if len(folders) != 1:
            self._record_failure(key, f"{path}: {len(folders)} models; the player serves one")
            return None
        local_path = await asyncio.to_thread(_write_config, mapped)
        self._config_files.append(local_path)
        return local_path, folders[0], version

    async def _read_stdout(self, backend: Backend) -> None:
        assert backend.process.stdout is not None
        async for raw in backend.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith(READY_WORD):
                log.info("pod %s: %s", backend.key, line)
                backend.ready = True
        code = await backend.process.wait()
        if not backend.ready or code != 0:
            tail = " | ".join(backend.stderr) or "no output"
            self._fail(backend, f"backend exited with {code}: {tail}")

    async def _read_stderr(self, backend: Backend) -> None:
        assert backend.process.stderr is not None
        async for raw in backend.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                backend.stderr.append(line[:500])

    def _fail(self, backend: Backend, why: str) -> None:
        if backend.failed is None and backend.key in self.backends:
            backend.failed = why
            backend.ready = False
            self._record_failure(backend.key, why)

    def _record_failure(self, key: str, why: str) -> None:
        log.warning("pod %s stays unready: %s", key, why)
        self.failures[key] = why

    async def _report(self, pod: dict[str, Any], *, ready: bool) -> None:
        """Read-modify-write of the whole status; a lost race (409) is retried next pass."""
        assert self._client is not None
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        fresh = await self._client.get(path)
        if fresh is None or fresh["metadata"].get("uid") != meta["uid"]:
            return
        try:
            await self._client.request("PUT", f"{path}/status", body=set_ready(fresh, ready))
        except KubeAPIError as exc:
            if exc.status not in (404, 409):
                raise
            log.info("pod %s/%s: status write raced (%s), retrying", *meta_key(meta), exc.status)
        else:
            log.info("pod %s/%s: Ready=%s", *meta_key(meta), ready)

    # -- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, max_runtime_s: float = MAX_RUNTIME_S) -> None:
        """Poll until ``stop`` is set or ``max_runtime_s`` passes; then stop every backend."""
        self._client = KubeClient(self._connection, timeout_s=10, retries=3, backoff_s=0.1)
        deadline = time.monotonic() + max_runtime_s
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    await self.step()
                except KubeAPIError as exc:  # the API server restarting: try again
                    log.warning("pod player pass failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self._interval_s)
        finally:
            await self.close()

    async def close(self) -> None:
        backends, self.backends = list(self.backends.values()), {}
        await asyncio.gather(*(b.stop() for b in backends), return_exceptions=True)
        await asyncio.to_thread(_remove, self._config_files)
        self._config_files.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- in a thread, for synchronous (session) fixtures ------------------------------------

    def start_thread(self) -> PodPlayer:
        started = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            loop.call_soon(started.set)
            try:
                loop.run_until_complete(self.run(self._stop))
            except BaseException as exc:
                self._error = exc
                log.exception("pod player crashed")
            finally:
                loop.close()

        self._thread = threading.Thread(target=main, name="pod-player", daemon=True)
        self._thread.start()
        if not started.wait(timeout=10):
            raise RuntimeError("pod player thread did not start")
        return self

    def stop_thread(self, timeout_s: float = 30.0) -> None:
        if self._thread is None or self._loop is None or self._stop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            raise RuntimeError(f"pod player did not stop within {timeout_s}s")
        self._thread = None

    @property
    def error(self) -> BaseException | None:
        return self._error

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def meta_key(meta: Mapping[str, Any]) -> tuple[str, str]:
    return meta["namespace"], meta["name"]


# The examples' model URIs (examples/*.yaml, the foundation scenarios) and the contract each
# needs: a 784-pixel, 10-class model (pixels [-1, 784] float32 -> probabilities [-1, 10]).
EXAMPLE_URIS = ("gs://tensorgate-examples/models/mnist", "/models/mnist")


def build_example_models(folder: Path) -> dict[str, str]:
    """Write the examples' model (versions 1 and 2, the same weights) under ``folder`` unless
    it is there; return the URI map that points the examples' URIs at it."""
    from tests.models import Family, export

    mnist = Family("mnist", "pixels", "probabilities", 784, 10, "probabilities", 10, 5, 4.0)
    base = folder / "mnist"
    for version in ("1", "2"):
        if not (base / version / "saved_model.pb").is_file():
            export(base / version, mnist)
    return {uri: str(base) for uri in EXAMPLE_URIS}


def _load_map(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    source = Path(text).read_text() if not text.lstrip().startswith("{") else text
    mapping = json.loads(source)
    if not isinstance(mapping, dict):
        raise SystemExit("--uri-map: want a JSON object {uri-prefix: local-folder}")
    return {str(k): str(v) for k, v in mapping.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.player", description=__doc__)
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    parser.add_argument("--uri-map", help="JSON object or file: model URI prefix -> folder")
    parser.add_argument(
        "--example-models",
        type=Path,
        help="build the examples' models in this folder (once) and map the examples' URIs",
    )
    parser.add_argument("--label-selector", default=PLAYER_LABEL)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between passes")
    parser.add_argument("--max-runtime", type=float, default=MAX_RUNTIME_S, help="seconds")
    args = parser.parse_args(argv)
    if not args.kubeconfig:
        parser.error("--kubeconfig (or KUBECONFIG) is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    uri_map = build_example_models(args.example_models) if args.example_models else {}
    uri_map.update(_load_map(args.uri_map))
    player = PodPlayer(
        connection_from_kubeconfig(args.kubeconfig),
        uri_map,
        label_selector=args.label_selector,
        interval_s=args.interval,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await player.run(stop, max_runtime_s=args.max_runtime)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
