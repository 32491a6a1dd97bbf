"""A confirm-promotion webhook gates a rollout on the real control plane: the real kopf
operator (ServiceAccount token), the API server, pods played with real TensorFlow, and a real
HTTP receiver on 127.0.0.1 that says 403 until a person releases it, then 200."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.helpers import eventually
from tests.integration.conftest import CANDIDATE, ModelRepo
from tests.integration.operator import rollout_scenarios as rs
from tests.integration.operator.conftest import KubeEnv
from tests.integration.operator.load import load
from tests.models import DIGITS
from tests.webhook_receiver import webhook_receiver

pytestmark = [pytest.mark.cluster, pytest.mark.tf]
DEADLINE_S = 15


async def test_cluster_confirm_promotion_webhook_holds_then_releases_a_rollout(
    kube: KubeEnv, operator: object, model_repo: ModelRepo
) -> None:
    with webhook_receiver() as receiver:
        receiver.scripts["/gate"] = [403]
        await rs.deploy_stable(kube, model_repo)
        rows = np.load(model_repo.golden)[DIGITS.input_name]
        async with load(kube, rs.NAME, DIGITS.name, rows, DIGITS.input_name):
            # user traffic: the steps' metric checks need requests
            hooks = [{"name": "gate", "type": "confirm-promotion", "url": f"{receiver.url}/gate"}]
            # A progressDeadline shorter than the wait: a manual gate is not a stuck rollout.
            await kube.apply_md(
                model_repo.manifest(CANDIDATE, webhooks=hooks, progressDeadline=f"{DEADLINE_S}s")
            )

            seen: list[Any] = [None]

            async def held() -> dict[str, Any] | None:
                md = await kube.get_md(rs.NAME)
                status = (md or {}).get("status") or {}
                seen[0] = (status.get("phase"), status.get("message"), len(receiver.at("/gate")))
                waiting = rs.condition(md or {}, "Progressing") or {}
                if waiting.get("reason") != "WaitingForConfirmation":
                    return None
                asked = receiver.at("/gate")  # asked again each interval, past the deadline
                return md if len(asked) >= 3 and asked[-1].at - asked[0].at > DEADLINE_S else None

            try:
                md = await eventually(held, timeout_s=180, what="promotion held by the webhook")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; last (phase, message, calls): {seen[0]}") from None
            status = md["status"]
            assert status["phase"] == "Progressing" and status["stableVersion"] != CANDIDATE
            assert "promotion waits for confirm-promotion webhook gate" in status["message"]
            assert "HTTP 403" in status["message"]
            payload = receiver.at("/gate")[0].json()
            assert payload["phase"] == "Progressing" and payload["weight"] > 0
            assert payload["hook"] == {"name": "gate", "type": "confirm-promotion"}

            receiver.scripts["/gate"] = [200]  # the person says yes
            md = await rs.wait_phase(kube, "Promoted", version=CANDIDATE, timeout_s=60)
    assert md["status"]["stableVersion"] == CANDIDATE
    assert md["status"]["history"][0]["decision"] == "Promoted"

    async def event_of(reason: str) -> dict[str, Any] | None:
        for event in await kube.client.list(kube.path("v1", "Event")):
            involved = event.get("involvedObject") or {}
            if involved.get("name") == rs.NAME and event.get("reason") == reason:
                return event
        return None

    event = await eventually(
        lambda: event_of("WaitingForConfirmation"), timeout_s=30, what="the waiting Event"
    )
    assert "confirm-promotion webhook gate" in event["message"], event
