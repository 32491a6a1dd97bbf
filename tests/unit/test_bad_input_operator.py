"""Generated bad resources through the operator's Reconciler (issue 12, item 1).

``tests/unit/test_bad_input_fuzz.py`` sends its mutated manifests (the ``mutated`` strategy,
reused here) through ``validate`` and ``render``; this module sends the same kind of input to
``tensorgate.reconcile.Reconciler``, the loop ``handlers.py`` drives under kopf, on the fake
platform. The body is what the API server would hand the operator: the generated ``spec`` as
it is (any JSON value), and the generated ``metadata`` where it is a mapping with a string
name (the API server keeps no other), else a fixed one. For every example:

- no exception escapes ``reconcile``;
- either the spec parses (it "works": the operator goes on with its rollout), or the outcome
  is ``InvalidSpec``: ``Ready``/``Progressing``/``Reconciling`` False and ``Stalled`` True with
  reason ``InvalidSpec``, a message that names the field (``spec...`` / ``metadata...``), and
  exactly one Warning Event with the same reason;
- for an invalid spec the platform created nothing (no Deployment, Service or route: no
  ``apply_track``, no ``route``) and no check ran;
- ``requeue_s`` is None (the operator waits for a change, never a hot loop), and a second
  reconcile of the same body with the status it wrote emits no new Event and leaves the status
  as it was.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tensorgate.api.spec import metadata_problems, parse_spec
from tensorgate.errors import SpecError
from tensorgate.platform.fake import FakePlatform, FakeRouter
from tensorgate.reconcile import Reconciler
from tests.unit.test_bad_input_fuzz import mutated
from tests.unit.test_reconcile import ScriptedChecker, StepClock

EXAMPLES = 1000
NAMED = re.compile(r"^(spec|metadata)[.:\[ ]")
OUTCOMES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _enough_examples() -> Iterator[None]:
    yield
    print(f"\nbad-input operator outcomes: {dict(OUTCOMES)}")  # the README's figures (pytest -s)
    if sum(OUTCOMES.values()):  # the test ran (not deselected with -k)
        assert OUTCOMES["works"] + OUTCOMES["InvalidSpec"] >= EXAMPLES, OUTCOMES
        assert OUTCOMES["InvalidSpec"] >= EXAMPLES // 2 and OUTCOMES["works"] >= 50, OUTCOMES


def as_delivered(doc: Any) -> dict[str, Any]:
    """The body kopf would hand the operator for ``doc``."""
    doc = doc if isinstance(doc, dict) else {}
    meta = doc.get("metadata")
    if not (isinstance(meta, dict) and isinstance(meta.get("name"), str) and meta["name"]):
        meta = {"name": "mnist"}
    meta = {**meta, "namespace": "ml", "generation": 1}  # the API server sets both
    return {"apiVersion": "tensorgate.dev/v1alpha1", "metadata": meta, "spec": doc.get("spec")}


def _problems(body: dict[str, Any]) -> list[str]:
    """What validation finds wrong, one line per field (empty: the spec works)."""
    problems = metadata_problems(body["metadata"])
    try:
        parse_spec(body["spec"])
    except SpecError as exc:
        problems += exc.errors
    return problems


async def _reconcile_twice(body: dict[str, Any]) -> None:
    platform, router, checker = FakePlatform(golden=b""), FakeRouter(), ScriptedChecker()
    routers = {"replicas": router, "gateway-api": router}
    reconciler = Reconciler(platform, routers, checker, StepClock())
    first = await reconciler.reconcile(body)
    problems = _problems(body)
    if not problems:
        OUTCOMES["works"] += 1
        reasons = {c.get("reason") for c in first.status.get("conditions", [])}
        assert "InvalidSpec" not in reasons, first.status
        assert first.status.get("observedGeneration") == 1, first.status
        return
    OUTCOMES["InvalidSpec"] += 1
    status = first.status
    conditions = {c["type"]: c for c in status["conditions"]}
    for kind, expected in (("Ready", "False"), ("Progressing", "False"), ("Stalled", "True")):
        assert (
            conditions[kind]["status"] == expected and conditions[kind]["reason"] == "InvalidSpec"
        )
    message = status["message"]
    assert message.startswith("invalid spec: "), message
    for problem in problems:
        assert NAMED.match(problem) and problem in message, problem
    assert [(e.reason, e.warning) for e in first.events] == [("InvalidSpec", True)]
    assert first.events[0].message == message
    assert platform.calls == [] and platform.tracks == {}, platform.calls
    assert router.weights == [] and checker.calls == []
    assert first.requeue_s is None
    again = await reconciler.reconcile({**body, "status": status})
    assert again.events == [] and again.status == status and again.requeue_s is None
    assert platform.calls == [] and checker.calls == []


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(doc=mutated())
def test_mutated_resource_through_the_reconciler_works_or_is_invalid_spec(doc: Any) -> None:
    asyncio.run(_reconcile_twice(as_delivered(doc)))
