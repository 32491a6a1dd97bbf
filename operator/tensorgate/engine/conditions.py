"""Conditions: merge changes so that lastTransitionTime moves only when status flips."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tensorgate.api.reasons import ConditionType, Reason
from tensorgate.api.status import Condition


@dataclass(frozen=True)
class ConditionChange:
    type: ConditionType
    is_true: bool
    reason: Reason
    message: str
    observed_generation: int


def merge_conditions(
    current: list[Condition],
    changes: tuple[ConditionChange, ...] | list[ConditionChange],
    now: datetime,
) -> list[Condition]:
    """Apply ``changes`` to ``current``; keep ``ConditionType``'s order (Ready, Progressing, ...)."""
    by_type = {c.type: c for c in current}
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for ch in changes:
        status = "True" if ch.is_true else "False"
        old = by_type.get(ch.type)
        flipped = old is None or old.status != status
        by_type[ch.type] = Condition(
            type=ch.type,
            status=status,
            reason=ch.reason,
            message=ch.message,
            last_transition_time=stamp if flipped or old is None else old.last_transition_time,
            observed_generation=ch.observed_generation,
        )
    order = [t.value for t in ConditionType]
    return sorted(by_type.values(), key=lambda c: order.index(c.type) if c.type in order else 99)
