"""A decision written to status but not yet recorded (the operator killed in between) is
recorded by the next operator, once: the drive loop against an in-memory API."""

from __future__ import annotations

import copy
from typing import Any

from tensorgate.api.reasons import Reason
from tensorgate.engine.rollout import Event
from tensorgate.handlers import ObjectState, recover_unrecorded


class OneObjectApi:
    """GET and merge-PATCH of one object's status, as the API server applies them."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.patches: list[dict[str, Any]] = []
        self.gets = 0

    async def get(self, path: str) -> dict[str, Any] | None:
        self.gets += 1
        return copy.deepcopy(self.obj)

    async def patch(self, path: str, patch: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.patches.append(patch)
        status = self.obj.setdefault("status", {})
        for key, value in patch.get("status", {}).items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
        return copy.deepcopy(self.obj)


class RecordingLedger:
    def __init__(self) -> None:
        self.transitions: list[tuple[Any, ...]] = []

    async def record_transition(self, *args: Any, **kwargs: Any) -> None:
        self.transitions.append(args)


class Memo:
    def __init__(self, api: OneObjectApi, ledger: RecordingLedger) -> None:
        self.state: dict[str, Any] = {"client": api, "ledger": ledger}


class Log:
    def info(self, *a: Any) -> None: ...
    def warning(self, *a: Any) -> None: ...


async def test_a_written_but_unrecorded_decision_is_recorded_once_after_a_restart(
    monkeypatch: Any,
) -> None:
    posted: list[Event] = []
    monkeypatch.setattr("tensorgate.handlers._post", lambda body, event: posted.append(event))
    previous = {"phase": "Progressing", "canaryVersion": "2", "rolloutId": "r1"}
    current = {"phase": "Promoting", "canaryVersion": "2", "rolloutId": "r1"}
    pending = {
        "previous": previous,
        "events": [{"reason": "StepAdvanced", "message": "promoting 2", "warning": False}],
    }
    api = OneObjectApi(
        {
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {},
            "status": {**current, "unrecorded": pending},
        }
    )
    ledger = RecordingLedger()
    memo = Memo(api, ledger)
    await recover_unrecorded(memo, ObjectState(), "/p", Log())
    assert "unrecorded" not in api.obj["status"]
    assert [(e.reason, e.message) for e in posted] == [(Reason.STEP_ADVANCED, "promoting 2")]
    assert ledger.transitions and ledger.transitions[-1][2:4] == (previous, current)
    await recover_unrecorded(memo, ObjectState(), "/p", Log())  # nothing left to record
    assert len(posted) == 1


async def test_a_driver_started_by_a_watch_event_without_unrecorded_status_reads_nothing(
    monkeypatch: Any,
) -> None:
    """1,000 drivers start at once after a restart: the watch event's body answers whether
    something is left to record, so a clean object costs no GET; a pending one is recorded
    from a fresh read."""
    posted: list[Event] = []
    monkeypatch.setattr("tensorgate.handlers._post", lambda body, event: posted.append(event))
    clean = {"metadata": {"name": "m", "namespace": "ns"}, "status": {"phase": "Promoted"}}
    api = OneObjectApi(copy.deepcopy(clean))
    memo = Memo(api, RecordingLedger())
    await recover_unrecorded(memo, ObjectState(body=copy.deepcopy(clean)), "/p", Log())
    assert api.gets == 0 and not api.patches

    pending = {"previous": {}, "events": [{"reason": "Promoted", "message": "v1"}]}
    api.obj["status"]["unrecorded"] = pending
    seen = copy.deepcopy(api.obj)
    await recover_unrecorded(memo, ObjectState(body=seen), "/p", Log())
    assert api.gets == 1 and "unrecorded" not in api.obj["status"]
    assert [e.reason for e in posted] == [Reason.PROMOTED]
