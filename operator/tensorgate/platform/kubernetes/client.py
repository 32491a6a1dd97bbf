"""A small async Kubernetes API client on httpx: timeouts, bounded retries, typed errors.

It authenticates with the same ``kopf.ConnectionInfo`` kopf logged in with, so the operator
has one identity (its ServiceAccount in a cluster, the kubeconfig user elsewhere).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import ssl
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

from tensorgate.errors import KubeAPIError

logger = logging.getLogger(__name__)

LAST_APPLIED = "tensorgate.dev/last-applied"
LIST_PAGE = 500  # objects per LIST page (client-go's reflector pages its lists by 500 too)
RETRY_STATUSES = {429, 500, 502, 503, 504}
# Requests in flight at once. Above this they wait in a FIFO semaphore instead of httpcore's
# pool, whose queue is quadratic in the number of waiting requests (1,000 objects deciding at
# once spent most of the operator's CPU there).
MAX_IN_FLIGHT = 32
Items = list[dict[str, Any]]  # (KubeClient.list shadows the builtin inside the class)

_PATHS = {
    ("v1", "Service"): "services",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("apps/v1", "Deployment"): "deployments",
    ("discovery.k8s.io/v1", "EndpointSlice"): "endpointslices",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    ("tensorgate.dev/v1alpha1", "ModelDeployment"): "modeldeployments",
}


class ConnectionLike(Protocol):
    """The fields of ``kopf.ConnectionInfo`` the client needs."""

    server: str
    ca_path: str | None
    ca_data: bytes | None
    insecure: bool | None
    token: str | None
    certificate_path: str | None
    certificate_data: bytes | None
    private_key_path: str | None
    private_key_data: bytes | None


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    """``/api/v1/namespaces/ns/services`` and the like."""
    try:
        plural = _PATHS[(api_version, kind)]
    except KeyError as exc:
        raise KubeAPIError(f"unknown kind {api_version}/{kind}") from exc
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


def object_path(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    base = collection_path(obj["apiVersion"], obj["kind"], meta["namespace"])
    return f"{base}/{meta['name']}"


def _as_bytes(data: bytes | str) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return data.encode()


def _ssl_context(conn: ConnectionLike) -> ssl.SSLContext | bool:
    if not conn.server.startswith("https"):
        return False
    if conn.insecure:
        return False
    ctx = ssl.create_default_context(cafile=conn.ca_path)
    if conn.ca_data:
        ctx.load_verify_locations(cadata=_as_bytes(conn.ca_data).decode())
    cert, key = conn.certificate_path, conn.private_key_path
    tmp = Path(tempfile.mkdtemp(prefix="tensorgate-"))
    if conn.certificate_data:
        cert = str(tmp / "client.crt")
        Path(cert).write_bytes(_as_bytes(conn.certificate_data))
    if conn.private_key_data:
        key = str(tmp / "client.key")
        Path(key).touch(mode=0o600)
        Path(key).write_bytes(_as_bytes(conn.private_key_data))
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def merge_patch(last: Any, current: Any, desired: Any) -> Any:
    """A three-way JSON merge patch (as ``kubectl apply`` computes): set what ``desired``
    says, remove what we applied last time and no longer want, leave the rest alone."""
    patch: dict[str, Any] = {}
    last = last if isinstance(last, dict) else {}
    current = current if isinstance(current, dict) else {}
    for key, value in desired.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            sub = merge_patch(last.get(key), current[key], value)
            if sub:
                patch[key] = sub
        elif current.get(key) != value:
            patch[key] = value
    for key in last:
        if key not in desired and key in current:
            patch[key] = None
    return patch


def applied_fingerprint(obj: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


class PriorityGate:
    """A FIFO semaphore with two lanes: a waiting urgent request goes before every waiting
    ordinary one, each lane first come, first served. Status writes are urgent, so 1,000
    objects created at once get their phase before the children the rest of their decisions
    create (those queue behind)."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._lanes: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    @contextlib.asynccontextmanager
    async def slot(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not any(self._lanes):
            self._free -= 1
            return
        lane = self._lanes[0 if urgent else 1]
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    lane.remove(waiter)
            raise

    def _release(self) -> None:
        for lane in self._lanes:
            while lane:
                waiter = lane.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1


class KubeClient:
    """get / list / create-or-patch / patch / delete with timeouts and bounded retries."""

    def __init__(
        self,
        conn: ConnectionLike,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_in_flight: int = MAX_IN_FLIGHT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "tensorgate"}
        if conn.token:
            headers["Authorization"] = f"Bearer {conn.token}"
        self._http = httpx.AsyncClient(
            base_url=conn.server.rstrip("/"),
            headers=headers,
            verify=_ssl_context(conn),
            timeout=httpx.Timeout(timeout_s),
            # The semaphore bounds requests; watches hold a connection each on top of them.
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=max_in_flight),
            transport=transport,
        )
        self._retries = retries
        self._backoff_s = backoff_s
        self._in_flight = PriorityGate(max_in_flight)
        self.informers: list[Informer] = []

    async def aclose(self) -> None:
        for informer in self.informers:
            await informer.stop()
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        allow: tuple[int, ...] = (),
        urgent: bool = False,
    ) -> dict[str, Any] | None:
        """Send one request; ``allow`` lists statuses answered with ``None`` (e.g. 404);
        ``urgent`` ones wait ahead of the others for a slot (``PriorityGate``)."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        for attempt in range(self._retries + 1):
            try:
                async with self._in_flight.slot(urgent=urgent):
                    resp = await self._http.request(
                        method, path, content=data, headers=headers, params=params
                    )
            except httpx.HTTPError as exc:
                if attempt < self._retries:
                    await asyncio.sleep(self._backoff_s * 2**attempt)
                    continue
                raise KubeAPIError(f"{method} {path}: {exc!r}") from exc
            if resp.status_code in allow:
                return None
            if resp.status_code in RETRY_STATUSES and attempt < self._retries:
                await asyncio.sleep(self._backoff_s * 2**attempt)
                continue
            if resp.status_code >= 400:
                try:
                    message = resp.json().get("message", resp.text)
                except ValueError:
                    message = resp.text
                raise KubeAPIError(
                    f"{method} {path}: {resp.status_code} {message}", resp.status_code
                )
            result: dict[str, Any] = resp.json() if resp.content else {}
            return result
        raise AssertionError("unreachable")

    async def get(self, path: str) -> dict[str, Any] | None:
        return await self.request("GET", path, allow=(404,))

    async def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """List objects; an equality ``label_selector`` is also applied to the answer, so a
        server that ignores it (some fakes do) cannot hand us other objects."""
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", path, params=params)
        items = list((result or {}).get("items") or [])
        if not label_selector:
            return items
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if "=" in part)
        return [
            i
            for i in items
            if all(
                ((i.get("metadata") or {}).get("labels") or {}).get(k) == v
                for k, v in wanted.items()
            )
        ]

    async def watch(
        self,
        path: str,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout_s: float = 300.0,
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events of a collection (``{"type", "object"}``), for at most
        ``timeout_s``; the server ends the stream at its own timeout too."""
        params = {"watch": "true", "timeoutSeconds": str(int(timeout_s))}
        if field_selector:
            params["fieldSelector"] = field_selector
        if label_selector:
            params["labelSelector"] = label_selector
        if resource_version:
            params["resourceVersion"] = resource_version
            params["allowWatchBookmarks"] = "true"
        timeout = httpx.Timeout(timeout_s + 10, connect=10)
        async with self._http.stream("GET", path, params=params, timeout=timeout) as resp:
            if resp.status_code >= 400:
                raise KubeAPIError(f"WATCH {path}: {resp.status_code}", resp.status_code)
            async for line in resp.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    def inform(
        self, api_version: str, kind: str, namespaces: tuple[str, ...], label_selector: str
    ) -> Informer:
        """Start a list+watch cache of ``kind`` objects with ``label_selector`` in
        ``namespaces`` (empty: the whole cluster); ``read``/``read_list`` then answer from it."""
        informer = Informer(self, api_version, kind, namespaces, label_selector)
        informer.start()
        self.informers.append(informer)
        return informer

    async def informers_synced(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until every informer has listed once: decisions made
        before that read by GET, which for 1,000s of objects at a restart is a burst."""
        synced = await asyncio.gather(*(i.wait_synced(timeout_s) for i in self.informers))
        return all(synced)

    def _informer_for(self, path: str) -> Informer | None:
        return next((i for i in self.informers if i.covers(path)), None)

    async def read(self, path: str) -> dict[str, Any] | None:
        """``get``, answered from a synced informer when one covers ``path`` (no request).
        What it answers may lag the API server by the watch's latency: use it for
        observations, never for a read-modify-write."""
        informer = self._informer_for(path)
        if informer is not None and informer.is_synced(path):
            return informer.get(path)
        return await self.get(path)

    async def read_list(self, path: str, label_selector: str) -> Items:
        """``list`` with an equality selector, answered from a synced informer if one covers
        the collection ``path`` and its selector is part of ``label_selector``."""
        informer = self._informer_for(path + "/-")
        if informer is not None and informer.is_synced(path + "/-"):
            found = informer.select(path, label_selector)
            if found is not None:
                return found
        return await self.list(path, label_selector)

    async def patch(
        self, path: str, patch: Mapping[str, Any], *, urgent: bool = False
    ) -> dict[str, Any] | None:
        return await self.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json", urgent=urgent
        )

    async def delete(self, path: str) -> bool:
        """Delete in the background (children go with the garbage collector); False if gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        result = await self.request("DELETE", path, body=body, allow=(404,))
        return result is not None

    async def apply(self, desired: Mapping[str, Any], *, absent: bool = False) -> dict[str, Any]:
        """Create ``desired`` or bring the live object in line with it (client-side apply).

        Unchanged objects cost one GET; ``absent`` (the caller just saw no such object) skips
        it and creates at once. A 409 on create (someone else, a replayed event, or a
        caller's stale view created it first) falls through to the patch.
        """
        path = object_path(desired)
        obj = json.loads(json.dumps(desired))
        stamp = json.dumps(desired, sort_keys=True, separators=(",", ":"))
        obj["metadata"].setdefault("annotations", {})[LAST_APPLIED] = stamp
        live = None if absent else await self.get(path)
        if live is None:
            collection = path.rsplit("/", 1)[0]
            try:
                created = await self.request("POST", collection, body=obj)
                assert created is not None
                return created
            except KubeAPIError as exc:
                if exc.status != 409:
                    raise
                live = await self.get(path)
                if live is None:
                    raise
        annotations = live.get("metadata", {}).get("annotations") or {}
        last_text = annotations.get(LAST_APPLIED)
        if last_text == stamp:
            return live
        last = json.loads(last_text) if last_text else {}
        patch = merge_patch(last, live, obj)
        patched = await self.patch(path, patch) if patch else live
        assert patched is not None
        return patched


def _selector(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(",") if "=" in part)


# What an informer keeps of an object's metadata: what observations and selections read.
# Dropped: managedFields and the last-applied stamp (together most of an object), owner
# references, creation time, finalizers.
_KEPT_METADATA = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "generation", "labels", "annotations"}
    | {"deletionTimestamp"}
)
# Of a Pod's status and its conditions: readiness, scheduling and the IP (no container
# statuses, no probe and transition times, which change on every heartbeat of a kubelet).
_KEPT_POD_STATUS = frozenset({"phase", "podIP", "conditions"})
_KEPT_CONDITION = frozenset({"type", "status", "reason", "message"})
_KEPT_SERVICE_SPEC = frozenset({"selector", "ports", "type"})
_INTERNED_MAX = 64  # string values up to this length are shared (labels, names, reasons)


def compact(value: Any) -> Any:
    """``value`` with every dict key, and short string values, interned: 1,000s of cached
    objects then share one copy of ``"app.kubernetes.io/managed-by"`` and the like."""
    if isinstance(value, dict):
        return {sys.intern(str(k)): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(v) for v in value]
    if isinstance(value, str) and len(value) <= _INTERNED_MAX:
        return sys.intern(value)
    return value


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What an informer keeps of an object, to hold 1,000s of them: only what observations
    read. Metadata: ``_KEPT_METADATA`` without the last-applied stamp. A Deployment: its
    replicas, its pod template's labels and annotations and its status counts (no
    conditions). A Pod: its node, its containers' names and ports, its phase, IP and
    conditions (type, status, reason, message). A Service: selector, ports and type."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k in _KEPT_METADATA}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    if "annotations" in meta:
        meta["annotations"] = annotations
    slim = {**obj, "metadata": meta}
    spec, status = obj.get("spec"), obj.get("status")
    if not isinstance(spec, dict):
        return compact(slim)  # type: ignore[no-any-return]
    template = spec.get("template")
    if isinstance(template, dict):  # a Deployment: its pods' labels and annotations only
        slim["spec"] = {**spec, "template": {"metadata": template.get("metadata") or {}}}
        if isinstance(status, dict):
            slim["status"] = {k: v for k, v in status.items() if k != "conditions"}
    elif "containers" in spec:  # a Pod
        containers = [
            {"name": c.get("name"), "ports": c.get("ports") or []}
            for c in spec.get("containers") or []
        ]
        slim["spec"] = {"nodeName": spec.get("nodeName"), "containers": containers}
        if isinstance(status, dict):
            kept = {k: v for k, v in status.items() if k in _KEPT_POD_STATUS}
            if "conditions" in kept:
                kept["conditions"] = [
                    {k: v for k, v in c.items() if k in _KEPT_CONDITION}
                    for c in kept["conditions"] or []
                ]
            slim["status"] = kept
    elif "selector" in spec or "ports" in spec:  # a Service
        slim["spec"] = {k: v for k, v in spec.items() if k in _KEPT_SERVICE_SPEC}
        slim.pop("status", None)
    return compact(slim)  # type: ignore[no-any-return]


class Informer:
    """A list+watch cache of one kind, by object path, for a label selector.

    One task per namespace (or one for the cluster) lists, then watches from the list's
    resourceVersion; a watch that ends is resumed from the last version seen, an expired
    version (410) or an error relists. A scope is *synced* from its first list until an error:
    only then may readers trust that an object missing from it does not exist.
    """

    def __init__(
        self,
        client: KubeClient,
        api_version: str,
        kind: str,
        namespaces: tuple[str, ...],
        label_selector: str,
        *,
        watch_timeout_s: float = 300.0,
        backoff_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0),
    ) -> None:
        self._client = client
        self._api_version, self._kind = api_version, kind
        self._namespaces = namespaces
        self.label_selector = label_selector
        self._wanted = _selector(label_selector)
        self._watch_timeout_s = watch_timeout_s
        self._backoff_s = backoff_s
        self._objects: dict[str, dict[str, Any]] = {}
        self._synced: set[str] = set()  # namespaces, or "" for the cluster
        self._first_sync = asyncio.Event()  # every scope listed once
        self._tasks: list[asyncio.Task[None]] = []
        probe = collection_path(api_version, kind, "NS")
        self._prefix, self._plural = probe.split("/namespaces/NS/")

    def _collection(self, namespace: str) -> str:
        if not namespace:
            return f"{self._prefix}/{self._plural}"
        return f"{self._prefix}/namespaces/{namespace}/{self._plural}"

    def _path(self, obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{self._collection(str(meta.get('namespace') or ''))}/{meta.get('name')}"

    def _namespace_of(self, path: str) -> str | None:
        """The namespace of an object path of our kind, or None if ``path`` is not one."""
        head = f"{self._prefix}/namespaces/"
        if not path.startswith(head):
            return None
        namespace, _, rest = path[len(head) :].partition("/")
        plural, _, name = rest.partition("/")
        if plural != self._plural or not name or "/" in name:
            return None
        return namespace

    def covers(self, path: str) -> bool:
        namespace = self._namespace_of(path)
        return namespace is not None and (not self._namespaces or namespace in self._namespaces)

    def is_synced(self, path: str) -> bool:
        namespace = self._namespace_of(path)
        scope = "" if not self._namespaces else namespace
        return namespace is not None and scope in self._synced

    def get(self, path: str) -> dict[str, Any] | None:
        return self._objects.get(path)

    def select(self, collection: str, label_selector: str) -> Items | None:
        """Objects of ``collection`` matching an equality selector; None if the selector
        does not narrow ours (the cache may lack what it asks for)."""
        wanted = _selector(label_selector)
        if any(wanted.get(k) != v for k, v in self._wanted.items()):
            return None
        prefix = collection + "/"
        return [
            obj
            for path, obj in self._objects.items()
            if path.startswith(prefix)
            and all(
                ((obj.get("metadata") or {}).get("labels") or {}).get(k) == v
                for k, v in wanted.items()
            )
        ]

    def apply_event(self, event: Mapping[str, Any]) -> str | None:
        """Fold one watch event into the cache; returns the resourceVersion it carries, or
        None for an ERROR event (the caller relists)."""
        kind, obj = event.get("type"), event.get("object") or {}
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "ERROR":
            return None
        if kind in {"ADDED", "MODIFIED"}:
            self._objects[self._path(obj)] = _slim(obj)
        elif kind == "DELETED":
            self._objects.pop(self._path(obj), None)
        return str(version) if version else ""

    def replace(self, namespace: str, items: list[dict[str, Any]]) -> None:
        """A fresh list of one scope (slimmed objects, as ``_list`` gives them) replaces
        what the cache held for it."""
        prefix = self._collection(namespace) + "/" if namespace else None
        for path in [p for p in self._objects if prefix is None or p.startswith(prefix)]:
            del self._objects[path]
        for item in items:
            if namespace:
                item.setdefault("metadata", {}).setdefault("namespace", namespace)
            self._objects[self._path(item)] = item
        self._synced.add(namespace)
        if self._synced >= set(self._namespaces or ("",)):
            self._first_sync.set()

    async def wait_synced(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until every scope has been listed once."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_sync.wait(), timeout=timeout_s)
        return self._first_sync.is_set()

    async def _list(self, path: str) -> tuple[list[dict[str, Any]], str]:
        """The collection in pages of ``LIST_PAGE`` (as client-go's reflector lists), each
        slimmed before the next is asked for, so that listing 1,000s of objects never holds
        them all whole at once; and the list's resourceVersion to watch from."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            params = {"labelSelector": self.label_selector, "limit": str(LIST_PAGE)}
            if token:
                params["continue"] = token
            page = await self._client.request("GET", path, params=params) or {}
            items += [_slim(item) for item in page.get("items") or []]
            meta = page.get("metadata") or {}
            token = str(meta.get("continue") or "")
            if not token:
                version = str(meta.get("resourceVersion") or "")
                if not version:
                    raise KubeAPIError(f"LIST {path}: no resourceVersion to watch from")
                return items, version

    def start(self) -> None:
        for scope in self._namespaces or ("",):
            self._tasks.append(asyncio.create_task(self._run(scope)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self, scope: str) -> None:
        path, failures = self._collection(scope), 0
        while True:
            try:
                items, version = await self._list(path)
                self.replace(scope, items)
                failures = 0
                while version:
                    started = time.monotonic()
                    async for event in self._client.watch(
                        path,
                        label_selector=self.label_selector,
                        resource_version=version,
                        timeout_s=self._watch_timeout_s,
                    ):
                        seen = self.apply_event(event)
                        if seen is None:  # e.g. 410 Gone: relist
                            version = ""
                            break
                        version = seen or version
                    if time.monotonic() - started < 1.0:
                        await asyncio.sleep(1.0)  # a server that ends watches at once
            except asyncio.CancelledError:
                raise
            except (KubeAPIError, httpx.HTTPError, ValueError) as exc:
                self._synced.discard(scope)
                delay = self._backoff_s[min(failures, len(self._backoff_s) - 1)]
                failures += 1
                where = scope or "all namespaces"
                logger.warning(
                    "%s informer for %s: %s; relisting in %.0fs", self._kind, where, exc, delay
                )
                await asyncio.sleep(delay)
