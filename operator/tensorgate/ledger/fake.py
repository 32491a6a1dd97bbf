"""``FakeLedger``: the ledger in memory, with the same transition plan as ``SqlLedger``."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tensorgate.errors import LedgerError
from tensorgate.ledger.base import (
    PROMOTED,
    LedgerUnavailable,
    RolloutRecord,
    StatusLike,
    plan_transition,
)


class FakeLedger:
    """Implements ``Ledger`` in memory. ``fail_next`` makes the next write raise LedgerError;
    while ``down`` is set every call raises ``LedgerUnavailable`` (a database outage)."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.rollouts: list[RolloutRecord] = []
        self.specs: dict[int, dict[str, Any]] = {}
        self.transitions = 0
        self.fail_next: LedgerError | None = None
        self.down = False
        self.closed = False
        self._clock = clock

    async def record_transition(
        self,
        namespace: str,
        name: str,
        old_status: StatusLike,
        new_status: StatusLike,
        spec: Mapping[str, Any],
        *,
        now: datetime | None = None,
    ) -> None:
        self._check_up()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        plan = plan_transition(old_status, new_status, spec, now or self._clock())
        if plan.is_empty:
            return
        rollouts, specs = list(self.rollouts), dict(self.specs)  # all or nothing

        def find(key: str) -> int:
            for i, r in enumerate(rollouts):
                if (r.namespace, r.model, r.rollout_key) == (namespace, name, key):
                    return i
            return -1

        def update(key: str, **changes: Any) -> None:
            index = find(key)
            if index < 0:
                raise LedgerError(f"ledger: rollout {key} of {namespace}/{name} not found")
            rollouts[index] = replace(rollouts[index], **changes)

        for start in plan.starts:
            if find(start.key) < 0:
                record = RolloutRecord(
                    id=len(rollouts) + 1,
                    namespace=namespace,
                    model=name,
                    rollout_key=start.key,
                    candidate_version=start.candidate_version,
                    stable_version=start.stable_version,
                    started_at=start.started_at,
                )
                rollouts.append(record)
                specs[record.id] = copy.deepcopy(start.spec)
        if plan.gate is not None:
            update(plan.gate[0], gate=plan.gate[1])
        if plan.phase is not None:
            key, change = plan.phase
            phases = rollouts[find(key)].phases
            same = (change.at, change.from_phase, change.to_phase)
            if all((p.at, p.from_phase, p.to_phase) != same for p in phases):  # replayed
                update(key, phases=(*phases, change))
        for end in plan.ends:
            update(end.key, decision=end.decision, reason=end.reason, finished_at=end.finished_at)
            if end.spec is not None:
                specs[rollouts[find(end.key)].id] = copy.deepcopy(end.spec)
        self.rollouts, self.specs = rollouts, specs
        self.transitions += 1

    def _check_up(self) -> None:
        if self.down:
            raise LedgerUnavailable("ledger write failed after 1 attempt(s): fake outage")

    async def history(self, namespace: str, name: str, limit: int = 20) -> list[RolloutRecord]:
        self._check_up()
        mine = [r for r in self.rollouts if (r.namespace, r.model) == (namespace, name)]
        mine.sort(key=lambda r: (r.started_at, r.id), reverse=True)
        return mine[: max(1, limit)]

    async def promoted_spec(self, namespace: str, name: str, version: str) -> dict[str, Any] | None:
        self._check_up()
        promoted = [
            r
            for r in self.rollouts
            if (r.namespace, r.model, r.candidate_version, r.decision)
            == (namespace, name, version, PROMOTED)
        ]
        if not promoted:
            return None
        newest = max(promoted, key=lambda r: (r.finished_at or r.started_at, r.id))
        return copy.deepcopy(self.specs[newest.id])

    async def close(self) -> None:
        self.closed = True
