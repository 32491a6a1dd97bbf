"""Kubernetes: serving tracks as Deployments, endpoints from EndpointSlices, two routers.

Observations (Deployments, their Pods, the user-facing Service) are ``KubeClient.read``s:
answered from the operator's informers when they are synced (no request), else a GET. Writes
and read-modify-writes (``apply``, the serving ConfigMap) always go to the API server."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from tensorgate.api.manifest_io import read_golden_file
from tensorgate.api.spec import ModelDeploymentSpec, ModelRef
from tensorgate.engine.rollout import TrackObservation
from tensorgate.errors import ConfigError, KubeAPIError
from tensorgate.platform.base import Body
from tensorgate.platform.golden_sources import GoldenSources, is_remote
from tensorgate.platform.kubernetes import manifests as m
from tensorgate.platform.kubernetes.client import KubeClient, collection_path, object_path

# A ConfigMap holds at most 1 MiB (data, keys and metadata together).
MAX_REPORT_BYTES = 1024 * 1024 - 16 * 1024


def _ns(body: Body) -> str:
    return str(body["metadata"].get("namespace", "default"))


def _track(track: str) -> m.Track:
    if track not in m.TRACKS:
        raise ValueError(f"unknown track {track!r}")
    return track  # type: ignore[return-value]


def _revision_of(deployment: dict[str, Any]) -> str | None:
    template = (deployment.get("spec") or {}).get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    revision = annotations.get(m.ANNOTATION_REVISION)
    return str(revision) if revision else None


def _pod_selector(body: Body, track: str) -> str:
    """The track's pods, with the label every child carries: what the informer holds."""
    labels = m.selector_labels(body["metadata"]["name"], _track(track))
    managed = m.common_labels(body["metadata"]["name"])["app.kubernetes.io/managed-by"]
    return ",".join(
        f"{k}={v}" for k, v in {**labels, "app.kubernetes.io/managed-by": managed}.items()
    )


def _ready_addresses(pods: list[dict[str, Any]], port_name: str, default_port: int) -> list[str]:
    """Ready pods' ``IP:port``: what the EndpointSlice controller would publish. Used when it
    cannot, e.g. for pod IPs an API server refuses in EndpointSlices (loopback addresses,
    which simulated clusters such as the kwok test cluster hand out)."""
    found: list[str] = []
    for pod in pods:
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if not ready or not status.get("podIP"):
            continue
        ports = [
            p.get("containerPort")
            for c in (pod.get("spec") or {}).get("containers") or []
            for p in c.get("ports") or []
            if p.get("name") == port_name
        ]
        found.append(f"{status['podIP']}:{ports[0] if ports else default_port}")
    return sorted(set(found))


class KubernetesPlatform:
    """Implements ``Platform`` with Deployments, Services and a serving ConfigMap."""

    def __init__(self, client: KubeClient, golden_sources: GoldenSources | None = None) -> None:
        self._kube = client
        self.golden_sources = golden_sources or GoldenSources()

    async def _ensure_config(self, body: Body, model: ModelRef) -> None:
        """Add the model's pinned config to the ConfigMap; keys of other versions stay."""
        desired = m.serving_config_map(body, [model])
        path = object_path(desired)
        live = await self._kube.get(path)
        if live is None:
            await self._kube.apply(desired, absent=True)
            return
        data = live.get("data") or {}
        missing = {k: v for k, v in desired["data"].items() if data.get(k) != v}
        if missing:
            await self._kube.patch(path, {"data": missing})

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
        """Scale a track already at ``revision``; otherwise render it (config, Services, the
        Deployment). A track at its revision is never re-rendered from a later spec, so what a
        stable pod runs cannot change under it."""
        name = m.deployment_name(body["metadata"]["name"], _track(track))
        path = f"{collection_path('apps/v1', 'Deployment', _ns(body))}/{name}"
        live = await self._kube.read(path)
        if live is not None and revision is not None and _revision_of(live) == revision:
            if int((live.get("spec") or {}).get("replicas", 1)) != replicas:
                await self._kube.patch(path, {"spec": {"replicas": replicas}})
            return
        await self._ensure_config(body, model)
        for svc in m.services(body, spec):
            await self._apply_service(svc)
        await self._kube.apply(
            m.deployment(
                body, spec, _track(track), model=model, replicas=replicas, revision=revision
            ),
            absent=live is None,
        )

    async def _apply_service(self, svc: dict[str, Any]) -> None:
        # The shared Service's selector belongs to the router: create it, never reset it.
        if await self._kube.read(object_path(svc)) is None:
            await self._kube.apply(svc, absent=True)

    async def delete_track(self, body: Body, track: str) -> None:
        name = m.deployment_name(body["metadata"]["name"], _track(track))
        await self._kube.delete(f"{collection_path('apps/v1', 'Deployment', _ns(body))}/{name}")

    async def observe(self, body: Body, track: str) -> TrackObservation:
        name = body["metadata"]["name"]
        base = collection_path("apps/v1", "Deployment", _ns(body))
        dep = await self._kube.read(f"{base}/{m.deployment_name(name, _track(track))}")
        if dep is None:
            return TrackObservation()
        spec, status = dep.get("spec") or {}, dep.get("status") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        fresh = (status.get("observedGeneration") or 0) >= (dep["metadata"].get("generation") or 0)
        obs = TrackObservation(
            exists=True,
            version=labels.get(m.LABEL_VERSION),
            revision=_revision_of(dep),
            desired=int(spec.get("replicas", 1)),
            ready=int(status.get("readyReplicas") or 0) if fresh else 0,
            updated=int(status.get("updatedReplicas") or 0) if fresh else 0,
            pods=int(status.get("replicas") or 0) + int(status.get("terminatingReplicas") or 0),
        )
        if obs.is_ready:
            return obs
        return TrackObservation(
            **{**obs.__dict__, "unschedulable": await self._unschedulable(body, track)}
        )

    async def _unschedulable(self, body: Body, track: str) -> str | None:
        selector = _pod_selector(body, track)
        pods = await self._kube.read_list(collection_path("v1", "Pod", _ns(body)), selector)
        for pod in pods:
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if (cond.get("type"), cond.get("status")) == ("PodScheduled", "False"):
                    return f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}"
        return None

    async def endpoints(self, body: Body, track: str) -> list[str]:
        return await self._addresses(body, track, "http", m.REST_PORT)

    async def grpc_endpoints(self, body: Body, track: str) -> list[str]:
        """``host:port`` gRPC addresses of a track's ready servers (the ``grpc`` port)."""
        return await self._addresses(body, track, "grpc", m.GRPC_PORT)

    async def _addresses(
        self, body: Body, track: str, port_name: str, default_port: int
    ) -> list[str]:
        """The track's ready servers at the revision its Deployment runs now. Pods of an
        earlier Deployment of the same name (deleted, its pods not yet collected) carry the
        same labels, so the Service's EndpointSlices still list them: they are left out."""
        current, stale = await self._pods_by_revision(body, track)
        service = m.track_service_name(body["metadata"]["name"], _track(track))
        slices = await self._kube.list(
            collection_path("discovery.k8s.io/v1", "EndpointSlice", _ns(body)),
            f"kubernetes.io/service-name={service}",
        )
        found: list[str] = []
        for es in slices:
            port = next(
                (p.get("port") for p in es.get("ports") or [] if p.get("name") == port_name),
                default_port,
            )
            for ep in es.get("endpoints") or []:
                pod = (ep.get("targetRef") or {}).get("name")
                if (ep.get("conditions") or {}).get("ready", True) and pod not in stale:
                    found.extend(f"{addr}:{port}" for addr in ep.get("addresses") or [])
        return sorted(set(found)) or _ready_addresses(current, port_name, default_port)

    async def _pods_by_revision(
        self, body: Body, track: str
    ) -> tuple[list[dict[str, Any]], set[str]]:
        """The track's pods that run its Deployment's revision (all of them for a Deployment
        written before revisions existed), and the names of the others: pods being deleted
        or left by an earlier Deployment of the name."""
        name = body["metadata"]["name"]
        base = collection_path("apps/v1", "Deployment", _ns(body))
        dep = await self._kube.read(f"{base}/{m.deployment_name(name, _track(track))}")
        revision = None if dep is None else _revision_of(dep)
        selector = _pod_selector(body, track)
        current: list[dict[str, Any]] = []
        stale: set[str] = set()
        for pod in await self._kube.read_list(collection_path("v1", "Pod", _ns(body)), selector):
            meta = pod["metadata"]
            at = (meta.get("annotations") or {}).get(m.ANNOTATION_REVISION)
            if dep is None or meta.get("deletionTimestamp") or revision not in (None, at):
                stale.add(str(meta.get("name")))
            else:
                current.append(pod)
        return current, stale

    async def read_golden(self, body: Body, spec: ModelDeploymentSpec) -> bytes:
        golden = spec.golden_set
        if golden is None:
            raise ConfigError("spec.goldenSet: not set")
        if golden.config_map_ref is not None:
            ref = golden.config_map_ref
            cm = await self._kube.get(f"{collection_path('v1', 'ConfigMap', _ns(body))}/{ref.name}")
            if cm is None:
                raise ConfigError(f"spec.goldenSet.configMapRef: ConfigMap {ref.name!r} not found")
            data = (cm.get("binaryData") or {}).get(ref.key)
            if data is None:
                raise ConfigError(
                    f"spec.goldenSet.configMapRef: ConfigMap {ref.name!r} has no binaryData key "
                    f"{ref.key!r} (create it with kubectl create configmap --from-file)"
                )
            return base64.b64decode(data)
        uri = golden.uri or ""
        if is_remote(uri):
            name = golden.credentials_secret
            if name is None:
                return await self.golden_sources.fetch(uri)
            where = f"spec.goldenSet.credentialsSecret: Secret {name!r}"
            try:
                secret = await self._kube.get(f"/api/v1/namespaces/{_ns(body)}/secrets/{name}")
            except KubeAPIError as exc:
                if exc.status != 403:
                    raise
                raise ConfigError(
                    f"{where}: the operator may not read Secrets in {_ns(body)!r} "
                    "(install the chart with rbac.goldenSetSecrets=true)"
                ) from exc
            if secret is None:
                raise ConfigError(f"{where} not found in namespace {_ns(body)!r}")
            data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
            return await self.golden_sources.fetch(uri, data, secret_name=name)
        if not uri.startswith("/"):
            raise ConfigError(
                f"spec.goldenSet.uri {uri!r}: the operator reads golden sets from s3://, gs://, "
                "a ConfigMap (configMapRef) or a path mounted into its pod"
            )
        try:
            return await asyncio.to_thread(
                read_golden_file, uri, self.golden_sources.options.max_bytes
            )
        except OSError as exc:
            raise ConfigError(f"spec.goldenSet.uri {uri!r}: {exc}") from exc

    async def publish_report(self, body: Body, html: str) -> str:
        """Implements ``ReportStore``: one ConfigMap ``<name>-gate-report`` per object, its
        ``report.html`` overwritten by each gate (no last-applied copy: the page may be
        512 KiB, over the 256 KiB annotations allow)."""
        size = len(html.encode())
        if size > MAX_REPORT_BYTES:
            raise ConfigError(f"gate report page {size} B > {MAX_REPORT_BYTES} B (a ConfigMap)")
        desired = m.gate_report_config_map(body, html)
        path = object_path(desired)
        created = await self._kube.request(
            "POST", path.rsplit("/", 1)[0], body=desired, allow=(409,)
        )
        if created is None:  # it exists: the newest page replaces the old one
            meta = desired["metadata"]
            await self._kube.patch(
                path,
                {
                    "metadata": {
                        "labels": meta["labels"],
                        "ownerReferences": meta["ownerReferences"],
                    },
                    "data": desired["data"],
                },
            )
        return str(desired["metadata"]["name"])


class ReplicaRouter:
    """One Service for users; weight 0 selects only stable pods, any other weight selects
    both tracks and the split follows the tracks' replica counts."""

    def __init__(self, client: KubeClient, golden_sources: GoldenSources | None = None) -> None:
        self._kube = client
        self.golden_sources = golden_sources or GoldenSources()

    async def route(self, body: Body, spec: ModelDeploymentSpec, weight: int) -> None:
        svc = m.service(body)
        path = object_path(svc)
        live = await self._kube.read(path)
        if live is None:
            await self._kube.apply(svc)
            live = svc
        selector = (live.get("spec") or {}).get("selector") or {}
        want_track = "stable" if weight == 0 else ("canary" if weight >= 100 else None)
        if selector.get(m.LABEL_TRACK) != want_track:
            await self._kube.patch(path, {"spec": {"selector": {m.LABEL_TRACK: want_track}}})


class GatewayRouter:
    """An HTTPRoute with weighted backendRefs to the per-track Services (Gateway API)."""

    def __init__(self, client: KubeClient, golden_sources: GoldenSources | None = None) -> None:
        self._kube = client
        self.golden_sources = golden_sources or GoldenSources()

    async def route(self, body: Body, spec: ModelDeploymentSpec, weight: int) -> None:
        await self._kube.apply(m.http_route(body, spec, weight))
