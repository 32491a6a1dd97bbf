"""A small async Kubernetes API client on httpx: timeouts, bounded retries, typed errors.

It authenticates with the same ``kopf.ConnectionInfo`` kopf logged in with, so the operator
has one identity (its ServiceAccount in a cluster, the kubeconfig user elsewhere).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

from tensorgate.errors import KubeAPIError

logger = logging.getLogger(__name__)

LAST_APPLIED = "tensorgate.dev/last-applied"
RETRY_STATUSES = {429, 500, 502, 503, 504}

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


class KubeClient:
    """get / list / create-or-patch / patch / delete with timeouts and bounded retries."""

    def __init__(
        self,
        conn: ConnectionLike,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.2,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "tensorgate"}
        if conn.token:
            headers["Authorization"] = f"Bearer {conn.token}"
        self._http = httpx.AsyncClient(
            base_url=conn.server.rstrip("/"),
            headers=headers,
            verify=_ssl_context(conn),
            timeout=httpx.Timeout(timeout_s),
        )
        self._retries = retries
        self._backoff_s = backoff_s

    async def aclose(self) -> None:
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
    ) -> dict[str, Any] | None:
        """Send one request; ``allow`` lists statuses answered with ``None`` (e.g. 404)."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        for attempt in range(self._retries + 1):
            try:
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
        self, path: str, *, field_selector: str | None = None, timeout_s: float = 300.0
    ) -> AsyncIterator[dict[str, Any]]:
        """The watch events of a collection (``{"type", "object"}``), for at most
        ``timeout_s``; the server ends the stream at its own timeout too."""
        params = {"watch": "true", "timeoutSeconds": str(int(timeout_s))}
        if field_selector:
            params["fieldSelector"] = field_selector
        timeout = httpx.Timeout(timeout_s + 10, connect=10)
        async with self._http.stream("GET", path, params=params, timeout=timeout) as resp:
            if resp.status_code >= 400:
                raise KubeAPIError(f"WATCH {path}: {resp.status_code}", resp.status_code)
            async for line in resp.aiter_lines():
                if line.strip():
                    yield json.loads(line)

    async def patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        return await self.request(
            "PATCH", path, body=patch, content_type="application/merge-patch+json"
        )

    async def delete(self, path: str) -> bool:
        """Delete in the background (children go with the garbage collector); False if gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        result = await self.request("DELETE", path, body=body, allow=(404,))
        return result is not None

    async def apply(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``desired`` or bring the live object in line with it (client-side apply).

        Unchanged objects cost one GET; a 409 on create (someone else, or a replayed
        event, created it first) falls through to the patch.
        """
        path = object_path(desired)
        obj = json.loads(json.dumps(desired))
        stamp = json.dumps(desired, sort_keys=True, separators=(",", ":"))
        obj["metadata"].setdefault("annotations", {})[LAST_APPLIED] = stamp
        live = await self.get(path)
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
