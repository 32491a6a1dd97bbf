"""Rollout scenarios (promote, roll back, resume) written once for every backend.

Each takes a ``KubeEnv`` whose serving pods are played by real local serving backends, so the
operator's smoke and golden-set checks run real TensorFlow behind real addresses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from tensorgate.app import build_reconciler
from tensorgate.checks import PlatformChecker
from tensorgate.metrics.fake import FakeMetricsProvider
from tensorgate.platform.kubernetes.client import KubeClient
from tensorgate.platform.kubernetes.platform import KubernetesPlatform
from tensorgate.settings import Settings
from tests.helpers import eventually
from tests.integration.conftest import BROKEN, CANDIDATE, GOOD, ModelRepo
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.load import load
from tests.integration.operator.scenarios import condition
from tests.models import DIGITS

__all__ = ["condition"]

NAME = "digits"


async def wait_phase(
    kube: KubeEnv, phase: str, *, version: str | None = None, timeout_s: float = 90
) -> dict[str, Any]:
    seen: list[Any] = [None]

    async def probe() -> dict[str, Any] | None:
        md = await kube.get_md(NAME)
        status = (md or {}).get("status") or {}
        seen[0] = {
            k: status.get(k)
            for k in ("phase", "message", "stableVersion", "canaryVersion", "canaryWeight")
        }
        if status.get("phase") != phase:
            return None
        if (
            version is not None
            and status.get("stableVersion") != version
            and (status.get("canaryVersion") != version)
        ):
            return None
        return md

    try:
        md: dict[str, Any] = await eventually(
            probe, timeout_s=timeout_s, what=f"phase {phase} ({version})"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {seen[0]}") from None
    return md


async def deploy_stable(kube: KubeEnv, repo: ModelRepo, **analysis: Any) -> None:
    await kube.apply_md(repo.manifest(GOOD, **analysis))
    await wait_phase(kube, "Promoted", version=GOOD)


async def scenario_good_candidate_is_promoted(kube: KubeEnv, repo: ModelRepo) -> None:
    """Real metric checks (TF Serving metrics scraped from the pods) with user traffic."""
    await deploy_stable(kube, repo)
    rows = np.load(repo.golden)[DIGITS.input_name]
    async with load(kube, NAME, DIGITS.name, rows, DIGITS.input_name) as sent:
        await kube.apply_md(repo.manifest(CANDIDATE))
        md = await wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=120)
    assert sent["canary"] > 0 and sent["stable"] > 0, sent
    checks = md["status"]["checks"]
    assert {c["name"] for c in checks} == {"error-rate", "latency-p99"}
    assert all(c["passed"] for c in checks), checks
    status = md["status"]
    assert status["stableVersion"] == CANDIDATE and "canaryVersion" not in status
    assert status["gate"]["decision"] == "promote"
    assert status["gate"]["samples"] == 600
    assert status["history"][0]["decision"] == "Promoted"
    ready = condition(md, "Ready")
    assert ready is not None and ready["status"] == "True"
    canary = await kube.client.get(kube.path("apps/v1", "Deployment", f"{NAME}-canary"))
    assert canary is None or canary["metadata"].get("deletionTimestamp")
    stable = await kube.client.get(kube.path("apps/v1", "Deployment", f"{NAME}-stable"))
    assert stable is not None
    assert stable["spec"]["template"]["metadata"]["labels"]["tensorgate.dev/version"] == CANDIDATE


async def scenario_broken_candidate_is_rolled_back(kube: KubeEnv, repo: ModelRepo) -> None:
    await deploy_stable(kube, repo)
    await kube.apply_md(repo.manifest(BROKEN))
    md = await wait_phase(kube, "RolledBack", timeout_s=120)
    status = md["status"]
    assert status["stableVersion"] == GOOD
    assert status.get("canaryWeight", 0) == 0
    degraded = condition(md, "Degraded")
    assert degraded is not None and degraded["reason"] == "AccuracyGateFailed"
    assert "maxAccuracyDrop" in degraded["message"]
    assert status["gate"]["canaryAccuracy"] < 0.3 < status["gate"]["stableAccuracy"]
    svc = await kube.client.get(kube.path("v1", "Service", NAME))
    assert svc is not None and svc["spec"]["selector"]["tensorgate.dev/track"] == "stable"

    async def canary_gone() -> bool:
        dep = await kube.client.get(kube.path("apps/v1", "Deployment", f"{NAME}-canary"))
        return dep is None or bool(dep["metadata"].get("deletionTimestamp"))

    await eventually(canary_gone, timeout_s=30, what="canary removed")
    await assert_gate_report(kube, md)


async def assert_gate_report(kube: KubeEnv, md: dict[str, Any]) -> None:
    """The gate's HTML page is in ConfigMap ``<name>-gate-report`` (named in status), owned by
    the ModelDeployment, with both accuracies in it as the page prints them."""
    gate = md["status"]["gate"]
    assert gate["reportConfigMap"] == f"{NAME}-gate-report"
    cm = await kube.client.get(kube.path("v1", "ConfigMap", gate["reportConfigMap"]))
    assert cm is not None
    (owner,) = cm["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("ModelDeployment", NAME)
    assert owner["uid"] == md["metadata"].get("uid", "")
    assert cm["metadata"]["labels"]["tensorgate.dev/model"] == NAME
    page = cm["data"]["report.html"]
    assert page.startswith("<!DOCTYPE html>") and "rollback" in page
    assert f"{gate['stableAccuracy']:.4f}" in page and f"{gate['canaryAccuracy']:.4f}" in page


async def scenario_golden_set_too_small_fails_before_any_pod(
    kube: KubeEnv, repo: ModelRepo
) -> None:
    """A golden set the gate scores 50 rows of can never promote at maxAccuracyDrop 0.02:
    the rollout fails at once (GoldenSetTooSmall, a Warning Event with the numbers) and no
    canary Deployment is ever created."""
    await deploy_stable(kube, repo)
    doc = repo.manifest(CANDIDATE)
    doc["spec"]["goldenSet"]["maxSamples"] = 50
    await kube.apply_md(doc)
    md = await wait_phase(kube, "RolledBack", timeout_s=60)
    degraded = condition(md, "Degraded")
    assert degraded is not None and degraded["reason"] == "GoldenSetTooSmall"
    assert "golden set has 50 rows" in degraded["message"]
    assert md["status"]["stableVersion"] == GOOD
    assert await kube.client.get(kube.path("apps/v1", "Deployment", f"{NAME}-canary")) is None
    if kube.backend == "kmock":
        return  # KMock answers a second generateName Event with 409 (FACTS.md): cluster only

    async def warning() -> dict[str, Any] | None:
        events = await kube.client.list(kube.path("v1", "Event"))
        return next(
            (
                e
                for e in events
                if e.get("reason") == "GoldenSetTooSmall"
                and (e.get("involvedObject") or {}).get("name") == NAME
            ),
            None,
        )

    event = await eventually(warning, timeout_s=30, what="the GoldenSetTooSmall Event")
    assert event["type"] == "Warning" and "maxAccuracyDrop 0.02" in event["message"]


# Starts the operator: ``start(make_reconciler)`` -> a running operator with ``shutdown()``.
Starter = Callable[..., Awaitable[Any]]


def with_metrics(provider: FakeMetricsProvider) -> Any:
    """A reconciler factory whose metric checks read ``provider`` (exact values per track)."""

    def make(client: KubeClient, settings: Settings) -> Any:
        checker = PlatformChecker(KubernetesPlatform(client), {"scrape": provider})
        return build_reconciler(client, settings, checker)

    return make


async def scenario_error_rate_regression_rolls_back(
    kube: KubeEnv, start_operator: Starter, repo: ModelRepo
) -> None:
    """The candidate passes the gate, then its error rate regresses during a traffic step."""
    provider = FakeMetricsProvider({("latency-p99", "canary"): 5.0, ("error-rate", "canary"): 0.25})
    await start_operator(with_metrics(provider))
    await deploy_stable(kube, repo)
    await kube.apply_md(repo.manifest(CANDIDATE))
    md = await wait_phase(kube, "RolledBack", timeout_s=120)
    status = md["status"]
    assert status["stableVersion"] == GOOD
    degraded = condition(md, "Degraded")
    assert degraded is not None and degraded["reason"] == "MetricCheckFailed"
    assert "error-rate 0.25 > max 0.01" in degraded["message"]
    assert status["gate"]["decision"] == "promote"  # it passed the gate, failed live
    failed = [c for c in status["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["error-rate"]


async def scenario_restart_mid_rollout_resumes(
    kube: KubeEnv, start_operator: Starter, repo: ModelRepo
) -> None:
    """An operator stopped mid-rollout; a new one goes on with the same rollout from status."""
    provider = FakeMetricsProvider({("latency-p99", "canary"): 5.0, ("error-rate", "canary"): 0.0})
    first = await start_operator(with_metrics(provider))
    await deploy_stable(kube, repo, steps=[20, 60, 100], interval="3s")
    await kube.apply_md(repo.manifest(CANDIDATE, steps=[20, 60, 100], interval="3s"))
    md = await wait_phase(kube, "Progressing", timeout_s=120)
    rollout_id = md["status"]["rolloutId"]
    await first.shutdown()
    before = (await kube.get_md(NAME) or {})["status"]
    assert before["phase"] == "Progressing"
    await start_operator(with_metrics(provider))
    md = await wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=120)
    status = md["status"]
    assert status["rolloutId"] == rollout_id  # the same rollout went on, not a new one
    assert [h["decision"] for h in status["history"]] == ["Promoted"]
    assert status["gate"]["samples"] == 600
