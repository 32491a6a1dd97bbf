"""Exact faults on KMock (issue 12, item 4): what the real control plane cannot inject on cue."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import kmock
import pytest

from tensorgate.handlers import ApiBackoffs
from tests.helpers import eventually
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.scenarios import MNIST, condition, manifest

KOPF_DEFAULT_S = (1, 1, 2, 3, 5, 8, 13, 21)  # kopf's NetworkingSettings.error_backoffs


def test_kopf_request_retries_outlast_a_ten_minute_api_outage() -> None:
    """kopf gives a request up (its watch too, which ends the operator) after its last
    backoff: 54 s by default. The operator's backoffs cover more than ten minutes, are
    bounded, and start afresh for every request (kopf iterates them once per request)."""
    first, again = list(ApiBackoffs()), list(ApiBackoffs())
    assert first == again
    assert sum(KOPF_DEFAULT_S) < 60 < 600 < sum(first) < 900
    assert max(first) <= 10 and first[:2] == [1.0, 1.0]


async def test_the_operator_gives_kopf_those_backoffs_at_startup() -> None:
    """The backoffs above only help if the startup handler installs them into kopf's
    settings (its watch and every API request read ``networking.error_backoffs``)."""
    import kopf
    from kopf._core.intents.causes import Activity

    from tensorgate.handlers import register
    from tensorgate.settings import Settings

    registry = kopf.OperatorRegistry()
    register(registry, Settings())
    (startup,) = registry._activities.get_handlers(activity=Activity.STARTUP)
    memo, kopf_settings = kopf.Memo(settings=Settings(), state={}), kopf.OperatorSettings()
    assert sum(kopf_settings.networking.error_backoffs) < 60  # kopf's own default
    await startup.fn(settings=kopf_settings, memo=memo)
    assert isinstance(kopf_settings.networking.error_backoffs, ApiBackoffs)
    assert sum(kopf_settings.networking.error_backoffs) > 600


# --- API faults at exact requests (KMock) ------------------------------------------------------
#
# ``Fault`` is a KMock criterion: it picks the n-th request (1-based) with a method and path
# suffix, or every such request while ``active``; the reaction set on it answers that request
# with the status (KMock still applies a POST or PATCH it answers with an error: a write that
# succeeded but whose answer was lost, the hardest case for duplicates).


@dataclass
class Fault:
    method: str  # one or more, "GET|POST"
    suffix: str  # one or more path endings, "/deployments|/deployments/x"
    hits: frozenset[int] = frozenset()
    active: bool = False
    seen: list[int] = field(default_factory=list)
    decided: dict[int, bool] = field(default_factory=dict)

    def __call__(self, request: kmock.Request) -> bool:
        if request.id in self.decided:  # KMock may ask again for the same request
            return self.decided[request.id]
        method = str(request.method).upper().rsplit(".", 1)[-1]
        matches = method in self.method.split("|") and any(
            request.url.path.endswith(s) for s in self.suffix.split("|")
        )
        if matches:
            self.seen.append(request.id)
        hit = matches and (self.active or len(self.seen) in self.hits)
        self.decided[request.id] = hit
        return hit

    @property
    def injected(self) -> int:
        return sum(self.decided.values())


def inject(
    k: kmock.KubernetesEmulator, fault: Fault, status: int, message: str | None = None
) -> Fault:
    reason = {403: "Forbidden", 409: "Conflict", 500: "InternalError", 503: "ServiceUnavailable"}
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status}
    (
        k[fault]
        << status
        << {
            **body,
            "reason": reason[status],
            "message": message or f"injected {status}",
        }
    )
    return fault


async def _ready(kube: KubeEnv, timeout_s: float = 30) -> dict[str, Any]:
    async def ready() -> dict[str, Any] | None:
        md = await kube.get_md("mnist")
        c = condition(md, "Ready")
        return md if c and c["status"] == "True" else None

    return await eventually(ready, timeout_s=timeout_s, what="Ready=True")


async def _names(kube: KubeEnv, api_version: str, kind: str) -> list[str]:
    return sorted(
        o["metadata"]["name"] for o in await kube.client.list(kube.path(api_version, kind))
    )


async def _events(kube: KubeEnv) -> list[tuple[str, str, str]]:
    return [
        (e.get("type", ""), e.get("reason", ""), e.get("message", ""))
        for e in await kube.client.list(kube.path("v1", "Event"))
    ]


async def _rollout(kube: KubeEnv) -> dict[str, Any]:
    """Create the stable track and make its pods ready: the operator reaches Ready=True."""
    await kube.apply_md(MNIST)
    dep = kube.path("apps/v1", "Deployment", "mnist-stable")
    await eventually(lambda: kube.client.get(dep), timeout_s=30, what="stable Deployment")
    await kube.mark_ready("mnist-stable")
    return await _ready(kube)


async def _lift(kube: KubeEnv, fault: Fault) -> int:
    """End an active fault and let the rollout finish (the stable pods made ready): how many
    requests the fault had met."""
    attempts = len(fault.seen)
    fault.active = False
    dep = kube.path("apps/v1", "Deployment", "mnist-stable")
    await eventually(lambda: kube.client.get(dep), timeout_s=30, what="stable Deployment")
    await kube.mark_ready("mnist-stable")
    await _ready(kube)
    return attempts


def _one_of_each(events: list[tuple[str, str, str]]) -> None:
    assert events and len(events) == len(set(events)), events  # none posted twice


@pytest.mark.parametrize("status", [500, 503])
async def test_deployment_create_5xx_once_is_retried_and_creates_one(
    kmock: kmock.KubernetesEmulator, kube: KubeEnv, operator: object, status: int
) -> None:
    """The first POST of the Deployment fails (KMock stored it anyway): the client retries
    (5xx are retried), the retry's 409 means "exists", the apply goes on; one Deployment."""
    fault = inject(kmock, Fault("POST", "/deployments", frozenset({1})), status)
    md = await _rollout(kube)
    assert fault.injected == 1 and 2 <= len(fault.seen) <= 3, fault.seen
    assert await _names(kube, "apps/v1", "Deployment") == ["mnist-stable"]
    assert md["status"]["phase"] == "Promoted" and "blocked" not in md["status"].get("message", "")
    _one_of_each(await _events(kube))


async def test_service_apply_503_twice_is_retried_and_creates_one(
    kmock: kmock.KubernetesEmulator, kube: KubeEnv, operator: object
) -> None:
    fault = inject(kmock, Fault("POST", "/services", frozenset({1, 2})), 503)
    await _rollout(kube)
    assert fault.injected == 2 and len(fault.seen) <= 4, fault.seen
    assert await _names(kube, "v1", "Service") == ["mnist"]
    _one_of_each(await _events(kube))


async def test_status_patch_409_once_is_decided_again_not_lost(
    kmock: kmock.KubernetesEmulator, kube: KubeEnv, operator: object
) -> None:
    """A 409 on the status write (someone wrote the object since it was read): the driver
    re-reads and decides again; the rollout completes, no Event twice, one Deployment."""
    fault = inject(kmock, Fault("PATCH", "/modeldeployments/mnist/status", frozenset({1})), 409)
    md = await _rollout(kube)
    assert fault.injected == 1 and len(fault.seen) >= 2
    assert md["status"]["phase"] == "Promoted"
    assert await _names(kube, "apps/v1", "Deployment") == ["mnist-stable"]
    _one_of_each(await _events(kube))


async def test_status_patch_500s_beyond_the_retries_back_off_then_complete(
    kmock: kmock.KubernetesEmulator, kube: KubeEnv, operator: object
) -> None:
    """More 500s on the status write than the client retries (3): the decision fails as an
    edge error, the driver backs off and decides again; bounded attempts, then Ready."""
    hits = frozenset(range(1, 6))
    fault = inject(kmock, Fault("PATCH", "/modeldeployments/mnist/status", hits), 500)
    md = await _rollout(kube)
    assert fault.injected == 5 and len(fault.seen) < 30, fault.seen
    assert md["status"]["phase"] == "Promoted"
    assert await _names(kube, "apps/v1", "Deployment") == ["mnist-stable"]
    _one_of_each(await _events(kube))


async def test_deployment_create_refused_blocks_with_status_and_event_then_recovers(
    kmock: kmock.KubernetesEmulator, kube: KubeEnv, operator: object
) -> None:
    """Every read and create of the Deployment fails (500) until the fault is lifted (KMock
    stores a POST it answers with 500, so the GET that would find it fails too): the edge
    error reaches status (Progressing, reason EdgeError, "blocked, retrying") and a Warning
    Event, with bounded attempts; once lifted, the rollout completes with one Deployment."""
    fault = Fault("GET|POST", "/deployments|/deployments/mnist-stable", active=True)
    inject(kmock, fault, 500)
    await kube.apply_md(MNIST)

    async def blocked() -> dict[str, Any] | None:
        md = await kube.get_md("mnist")
        c = condition(md, "Progressing")
        return md if c and c["reason"] == "EdgeError" else None

    md = await eventually(blocked, timeout_s=30, what="Progressing=EdgeError")
    assert md["status"]["message"].startswith("blocked, retrying:"), md["status"]["message"]
    assert "500" in md["status"]["message"]

    async def warned() -> list[tuple[str, str, str]] | None:
        found = [e for e in await _events(kube) if e[1] == "EdgeError"]
        return found or None

    warnings = await eventually(warned, timeout_s=30, what="the EdgeError Event")
    assert all(e[0] == "Warning" and "blocked, retrying" in e[2] for e in warnings), warnings
    attempts = await _lift(kube, fault)
    assert attempts < 40, attempts  # backed off, not a hot loop
    assert await _names(kube, "apps/v1", "Deployment") == ["mnist-stable"]
    _one_of_each(await _events(kube))


@pytest.mark.parametrize("status", [409, 500])
async def test_deployment_apply_patch_fault_once_is_retried_to_the_desired_state(
    kmock: kmock.KubernetesEmulator, kube: KubeEnv, operator: object, status: int
) -> None:
    """A promoted model is scaled (``serving.replicas`` 1 -> 2): the first PATCH of its
    Deployment answers 409 (not retried by the client: the decision fails as an edge error
    and the next one applies again) or 500 (retried by the client). Either way the Deployment
    reaches 2 replicas, stays one object, and the model Ready."""
    await _rollout(kube)
    fault = inject(kmock, Fault("PATCH", "/deployments/mnist-stable", frozenset({1})), status)
    await kube.apply_md(manifest(serving__replicas=2))
    dep_path = kube.path("apps/v1", "Deployment", "mnist-stable")

    async def scaled() -> dict[str, Any] | None:
        dep = await kube.client.get(dep_path)
        return dep if dep and dep["spec"].get("replicas") == 2 else None

    await eventually(scaled, timeout_s=30, what="2 replicas")
    assert fault.injected == 1 and len(fault.seen) <= 3, fault.seen
    await kube.mark_ready("mnist-stable")
    await _ready(kube)
    assert await _names(kube, "apps/v1", "Deployment") == ["mnist-stable"]
    _one_of_each(await _events(kube))


# What kube-apiserver answers when the Service range is used up (pkg/registry/core/service/
# ipallocator: ErrFull, wrapped as an internal error by the REST storage) and for a write into
# a namespace being deleted (the NamespaceLifecycle admission plugin).
RANGE_FULL = "Internal error occurred: failed to allocate a serviceIP: range is full"
TERMINATING_MESSAGE = (
    'deployments.apps "mnist-stable" is forbidden: unable to create new content in namespace '
    "ns because it is being terminated"
)


async def test_a_full_service_range_blocks_with_status_and_event(
    kmock: kmock.KubernetesEmulator, kube: KubeEnv, operator: object
) -> None:
    """Issue 11: objects whose Service could not be created had no status and no Event for 10
    minutes. Every Service create answers "range is full": the reason reaches status
    (Progressing EdgeError, "blocked, retrying: ... range is full"), with backed-off
    attempts; once there is room, the rollout completes with one Service."""
    # KMock keeps an object whose create it failed; the real API server does not: the read
    # that would find it fails too, so every decision meets the full range.
    fault = Fault("GET|POST", "/services|/services/mnist", active=True)
    inject(kmock, fault, 500, RANGE_FULL)
    await kube.apply_md(MNIST)

    async def blocked() -> dict[str, Any] | None:
        md = await kube.get_md("mnist")
        message = (md or {}).get("status", {}).get("message", "")
        return md if "range is full" in message else None

    md = await eventually(blocked, timeout_s=30, what="the full range in status")
    assert md["status"]["message"].startswith("blocked, retrying:"), md["status"]["message"]
    assert condition(md, "Progressing")["reason"] == "EdgeError"

    # The Warning Event is asserted by the Deployment test above: KMock names every Event of
    # an object alike (no generateName), so it refuses this one, the object's second, with 409.
    attempts = await _lift(kube, fault)
    assert attempts < 40, attempts  # backed off, not a hot loop
    assert await _names(kube, "v1", "Service") == ["mnist"]


async def test_a_namespace_being_deleted_gets_no_blocked_status_or_event(
    kmock: kmock.KubernetesEmulator, kube: KubeEnv, operator: object
) -> None:
    """A create in a namespace being deleted (403 "... because it is being terminated", every
    create: the ConfigMap, Services, Deployments, Events) is not an error to report or back
    off from: the driver waits for the next event (the deletion) or resync, and writes no
    "blocked" status into the namespace (before, 300 objects answered 598 x 403 while their
    namespace was deleted)."""
    fault = Fault("POST", "/configmaps|/services|/deployments|/events", active=True)
    inject(kmock, fault, 403, TERMINATING_MESSAGE)
    writes: list[str] = []

    def status_write(request: kmock.Request) -> bool:  # records, never answers
        if str(request.method).upper().endswith("PATCH") and request.url.path.endswith(
            "/modeldeployments/mnist/status"
        ):
            writes.append(str(request.text))
        return False

    kmock[status_write] << 500  # never matches: the criterion only records
    await kube.apply_md(MNIST)
    # Three creates met the 403 (KMock keeps what it refused, so each decision moves on to
    # the next object; the resync here is 0.5 s): each would have been reported as blocked.
    await eventually(
        lambda: _value(fault.injected >= 3), timeout_s=30, what="three creates met the 403"
    )
    assert writes, "the operator wrote no status at all"
    assert not [w for w in writes if "blocked" in w], writes


async def _value(ok: bool) -> bool | None:
    return ok or None
