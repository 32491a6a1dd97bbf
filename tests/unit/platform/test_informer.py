"""``Informer`` and ``KubeClient.read``: observations from a list+watch cache, GETs until it
is synced, and the FIFO bound on requests in flight (httpx.MockTransport as the API server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import kopf

from tensorgate.platform.kubernetes.client import KubeClient
from tests.helpers import eventually

DEPLOYMENTS = "/apis/apps/v1/namespaces/ns/deployments"
SELECTOR = "app.kubernetes.io/managed-by=tensorgate"


def dep(name: str, version: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": version,
            "labels": {"app.kubernetes.io/managed-by": "tensorgate", **labels},
            "managedFields": [{"manager": "kube-controller-manager"}],
        },
        "spec": {"replicas": 1},
    }


def probe(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class FakeAPI:
    """A list answer, then one watch stream per entry of ``streams`` (the last one stays
    open); records every request."""

    def __init__(self, items: list[dict[str, Any]], streams: list[list[dict[str, Any]]]) -> None:
        self.items, self.streams = items, streams
        self.requests: list[httpx.Request] = []
        self.list_version: str | None = "10"

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        params = request.url.params
        if request.method == "GET" and params.get("watch") == "true":
            if not self.streams:
                await asyncio.Event().wait()  # an open watch with nothing to say
            lines = "".join(json.dumps(e) + "\n" for e in self.streams.pop(0))
            return httpx.Response(200, content=lines.encode())
        if request.url.path == DEPLOYMENTS:
            meta = {"resourceVersion": self.list_version} if self.list_version else {}
            return httpx.Response(200, json={"metadata": meta, "items": self.items})
        return httpx.Response(404, json={"message": "not found"})

    def gets(self, path: str) -> int:
        return sum(1 for r in self.requests if r.method == "GET" and r.url.path == path)

    def watches(self) -> list[httpx.QueryParams]:
        return [r.url.params for r in self.requests if r.url.params.get("watch") == "true"]


def client(api: Handler, **kw: Any) -> KubeClient:
    conn = kopf.ConnectionInfo(server="http://127.0.0.1:1", insecure=True)
    return KubeClient(conn, retries=0, transport=httpx.MockTransport(api), **kw)


async def test_reads_come_from_the_watch_once_synced_and_follow_its_events() -> None:
    """Listed objects are answered without a request; ADDED/MODIFIED/DELETED events update
    the cache; the watch starts from the list's resourceVersion and resumes from the last
    event's; an absent object in a synced namespace is None without a GET."""
    api = FakeAPI(
        [dep("a", "5")],
        [
            [
                {"type": "MODIFIED", "object": dep("a", "11") | {"spec": {"replicas": 3}}},
                {"type": "ADDED", "object": dep("b", "12")},
                {"type": "DELETED", "object": dep("a", "13")},
            ]
        ],
    )
    kube = client(api)
    informer = kube.inform("apps/v1", "Deployment", ("ns",), SELECTOR)
    try:
        await eventually(probe(lambda: len(api.watches()) >= 2), timeout_s=10, what="watch resumed")
        assert await kube.read(f"{DEPLOYMENTS}/a") is None
        b = await kube.read(f"{DEPLOYMENTS}/b")
        assert b is not None and "managedFields" not in b["metadata"]
        assert api.gets(f"{DEPLOYMENTS}/a") == api.gets(f"{DEPLOYMENTS}/b") == 0
        first, second = api.watches()[:2]
        assert (first["resourceVersion"], second["resourceVersion"]) == ("10", "13")
        assert first["labelSelector"] == SELECTOR
        assert [d["metadata"]["name"] for d in informer.select(DEPLOYMENTS, SELECTOR) or []] == [
            "b"
        ]
    finally:
        await kube.aclose()


async def test_an_expired_watch_relists_and_the_list_replaces_the_cache() -> None:
    """An ERROR event (410 Gone: the version is too old) makes the informer list again; what
    the new list lacks is gone from the cache."""
    api = FakeAPI([dep("a", "5"), dep("b", "6")], [[{"type": "ERROR", "object": {"code": 410}}]])
    kube = client(api)
    kube.inform("apps/v1", "Deployment", ("ns",), SELECTOR)
    try:
        await eventually(probe(lambda: len(api.watches()) >= 1), timeout_s=10, what="first watch")
        api.items = [dep("b", "20")]
        await eventually(probe(lambda: len(api.watches()) >= 2), timeout_s=10, what="relist")
        assert api.gets(DEPLOYMENTS) >= 2
        assert await kube.read(f"{DEPLOYMENTS}/a") is None
        assert api.gets(f"{DEPLOYMENTS}/a") == 0
        got = await kube.read(f"{DEPLOYMENTS}/b")
        assert got is not None and got["metadata"]["resourceVersion"] == "20"
    finally:
        await kube.aclose()


async def test_reads_are_gets_until_synced_and_outside_what_is_informed() -> None:
    """A list without a resourceVersion (nothing to watch from) never syncs: reads are GETs.
    Other namespaces, other kinds and selectors that do not narrow the informer's are GETs."""
    api = FakeAPI([dep("a", "5")], [])
    api.list_version = None
    kube = client(api)
    kube.inform("apps/v1", "Deployment", ("ns",), SELECTOR)
    try:
        await eventually(probe(lambda: api.gets(DEPLOYMENTS) >= 1), timeout_s=10, what="first list")
        assert await kube.read(f"{DEPLOYMENTS}/a") is None  # FakeAPI answers GETs with 404
        assert api.gets(f"{DEPLOYMENTS}/a") == 1
        api.list_version = "10"
        await eventually(probe(lambda: len(api.watches()) >= 1), timeout_s=30, what="synced")
        assert await kube.read(f"{DEPLOYMENTS}/a") is not None
        assert api.gets(f"{DEPLOYMENTS}/a") == 1
        other = "/apis/apps/v1/namespaces/other/deployments/a"
        assert await kube.read(other) is None and api.gets(other) == 1
        assert await kube.read_list(DEPLOYMENTS, "tensorgate.dev/model=a") == []
        assert api.gets(DEPLOYMENTS) >= 3  # the broader selector went to the server
        narrowed = await kube.read_list(DEPLOYMENTS, f"{SELECTOR},tensorgate.dev/model=x")
        assert narrowed == []
    finally:
        await kube.aclose()


async def test_requests_in_flight_are_bounded_and_served_first_come_first_served() -> None:
    """With max_in_flight=2, at most two requests reach the connection pool at once, and the
    waiting ones go in the order they came."""
    gate = asyncio.Event()
    in_flight, most, order = 0, 0, []

    async def api(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        order.append(request.url.path)
        await gate.wait()
        in_flight -= 1
        return httpx.Response(200, json={})

    kube = client(api, max_in_flight=2)
    try:
        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(kube.get(f"/api/v1/namespaces/ns/pods/p{i}")))
            await asyncio.sleep(0)
        await eventually(probe(lambda: len(order) == 2), timeout_s=5, what="two in flight")
        gate.set()
        await asyncio.gather(*tasks)
        assert most == 2
        assert order == [f"/api/v1/namespaces/ns/pods/p{i}" for i in range(6)]
    finally:
        await kube.aclose()


def test_the_cache_keeps_what_observations_read_and_drops_the_bulk() -> None:
    """A Deployment keeps replicas, its template's labels and revision annotation and its
    status; a Pod its conditions, IP and container ports. Dropped: managedFields, the
    last-applied stamp, the pod template spec, the rest of a Pod's spec."""
    from tensorgate.platform.kubernetes.client import LAST_APPLIED, _slim

    template_meta = {"labels": {"v": "2"}, "annotations": {"tensorgate.dev/revision": "r2"}}
    deployment = dep("a", "5") | {
        "spec": {
            "replicas": 3,
            "template": {"metadata": template_meta, "spec": {"containers": [{"name": "x"}]}},
        },
        "status": {"readyReplicas": 2},
    }
    deployment["metadata"]["annotations"] = {LAST_APPLIED: "{...}", "keep": "me"}
    slim = _slim(deployment)
    assert slim["spec"] == {"replicas": 3, "template": {"metadata": template_meta}}
    assert slim["status"] == {"readyReplicas": 2}
    assert slim["metadata"]["annotations"] == {"keep": "me"}
    assert "managedFields" not in slim["metadata"]
    assert deployment["spec"]["template"]["spec"]  # the event's object is left alone

    ports = [{"name": "http", "containerPort": 8501}]
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "managedFields": []},
        "spec": {"nodeName": "n", "containers": [{"name": "c", "ports": ports, "args": ["x"]}]},
        "status": {"podIP": "127.0.0.9", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    slim = _slim(pod)
    assert slim["spec"] == {"nodeName": "n", "containers": [{"name": "c", "ports": ports}]}
    assert slim["status"] == pod["status"]


def test_the_cache_drops_status_and_metadata_no_observation_reads_and_shares_keys() -> None:
    """Per object the cache holds only what observations read (issue 11: < 100 KiB per
    object at 1,000): a Pod's container statuses and the times of its conditions go, as do a
    Deployment's conditions, a Service's cluster IPs and status, owner references and
    creation times. Keys (and short values) are interned, so objects share them."""
    from tensorgate.platform.kubernetes.client import _slim

    def pod(name: str) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "namespace": "ns",
                "labels": {"app.kubernetes.io/managed-by": "tensorgate"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "rs"}],
                "creationTimestamp": "2026-12-01T00:00:00Z",
                "deletionTimestamp": "2026-12-01T00:01:00Z",
            },
            "spec": {"containers": [{"name": "c", "ports": []}]},
            "status": {
                "phase": "Running",
                "podIP": "127.0.0.9",
                "hostIP": "127.0.0.1",
                "containerStatuses": [{"name": "c", "ready": True}],
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/4 nodes",
                        "lastTransitionTime": "2026-12-01T00:00:00Z",
                        "lastProbeTime": None,
                    }
                ],
            },
        }

    a, b = _slim(json.loads(json.dumps(pod("a")))), _slim(json.loads(json.dumps(pod("b"))))
    assert a["status"] == {
        "phase": "Running",
        "podIP": "127.0.0.9",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/4 nodes",
            }
        ],
    }
    assert a["metadata"] == {
        "name": "a",
        "namespace": "ns",
        "labels": {"app.kubernetes.io/managed-by": "tensorgate"},
        "deletionTimestamp": "2026-12-01T00:01:00Z",
    }
    key_a = next(k for k in a["metadata"]["labels"])
    key_b = next(k for k in b["metadata"]["labels"])
    assert key_a is key_b  # one string for 1,000 objects (json.loads makes one per object)

    deployment = dep("d", "3") | {
        "spec": {"replicas": 1, "template": {"metadata": {}}},
        "status": {"readyReplicas": 1, "conditions": [{"type": "Available"}]},
    }
    assert _slim(deployment)["status"] == {"readyReplicas": 1}

    service = {
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"selector": {"t": "stable"}, "ports": [{"port": 80}], "clusterIPs": ["10.0.0.9"]},
        "status": {"loadBalancer": {}},
    }
    assert _slim(service) == {
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"selector": {"t": "stable"}, "ports": [{"port": 80}]},
    }


async def test_an_urgent_request_waits_ahead_of_ordinary_ones_each_lane_in_order() -> None:
    """Status writes (urgent) overtake queued child creation, so every object of a burst gets
    its phase first; a waiter cancelled in the queue gives up its place, not a slot."""
    gate = asyncio.Event()
    order: list[str] = []

    async def api(request: httpx.Request) -> httpx.Response:
        order.append(request.url.path.split("/pods/", 1)[1])
        await gate.wait()
        return httpx.Response(200, json={})

    kube = client(api, max_in_flight=1)
    base = "/api/v1/namespaces/ns/pods"
    try:
        first = asyncio.create_task(kube.get(f"{base}/first"))
        await eventually(probe(lambda: order == ["first"]), timeout_s=5, what="first in flight")
        tasks = [
            asyncio.create_task(kube.get(f"{base}/a")),
            asyncio.create_task(kube.get(f"{base}/b")),
        ]
        gone = asyncio.create_task(kube.request("GET", f"{base}/gone", urgent=True))
        tasks.append(asyncio.create_task(kube.patch(f"{base}/u1/status", {}, urgent=True)))
        tasks.append(asyncio.create_task(kube.patch(f"{base}/u2/status", {}, urgent=True)))
        await asyncio.sleep(0.05)
        gone.cancel()
        gate.set()
        await asyncio.gather(first, *tasks)
        assert order == ["first", "u1/status", "u2/status", "a", "b"]
    finally:
        await kube.aclose()


class PagedAPI(FakeAPI):
    """Lists in pages of the ``limit`` asked for, with ``continue`` tokens, as kube-apiserver
    does; the resourceVersion of the snapshot is on every page."""

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if request.url.path != DEPLOYMENTS or params.get("watch") == "true":
            return await super().__call__(request)
        self.requests.append(request)
        limit = int(params["limit"])
        start = int(params.get("continue") or 0)
        page = self.items[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": "10"}
        if start + limit < len(self.items):
            meta["continue"] = str(start + limit)
        return httpx.Response(200, json={"metadata": meta, "items": page})


async def test_the_list_is_read_in_pages_and_drivers_can_wait_for_it(
    monkeypatch: Any,
) -> None:
    """At a restart with 1,000s of children the informer lists them in pages (``limit`` and
    ``continue``, each page slimmed before the next), and ``informers_synced`` tells the
    drivers when every informer has listed once, so their first decisions read no GETs."""
    import tensorgate.platform.kubernetes.client as kube_client

    monkeypatch.setattr(kube_client, "LIST_PAGE", 2)
    api = PagedAPI([dep(f"d{i}", str(i)) for i in range(5)], [])
    kube = client(api)
    kube.inform("apps/v1", "Deployment", ("ns",), SELECTOR)
    try:
        assert await kube.informers_synced(timeout_s=10)
        lists = [r.url.params for r in api.requests if r.url.params.get("watch") != "true"]
        assert [(p["limit"], p.get("continue")) for p in lists] == [
            ("2", None), ("2", "2"), ("2", "4")
        ]  # fmt: skip
        for i in range(5):
            got = await kube.read(f"{DEPLOYMENTS}/d{i}")
            assert got is not None and "managedFields" not in got["metadata"]
        assert api.gets(f"{DEPLOYMENTS}/d0") == 0
        assert api.watches()[0]["resourceVersion"] == "10"
    finally:
        await kube.aclose()


async def test_waiting_for_informers_that_cannot_list_ends_at_its_timeout() -> None:
    async def refused(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"message": "forbidden"})

    kube = client(refused)
    kube.inform("apps/v1", "Deployment", ("ns",), SELECTOR)
    try:
        assert await kube.informers_synced(timeout_s=0.3) is False
    finally:
        await kube.aclose()
