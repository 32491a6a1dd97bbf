"""How many serving pods each track runs: true weights inside a GPU budget.

The canary takes its share of ``serving.replicas`` from the stable track (as Argo Rollouts'
basic canary does), so the canary's share of serving pods is the weight reported in status.
Pods move between the tracks like a rolling update with ``maxUnavailable: 0``: a track grows
only while the pods of both tracks together stay within ``replicas + maxSurge`` (every pod may
hold a GPU), and a track shrinks only as far as the other track's Ready pods make up for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrackObservation:
    """What the platform reports about one track's serving pods."""

    exists: bool = False
    version: str | None = None
    revision: str | None = None
    desired: int = 0
    ready: int = 0
    updated: int = 0
    pods: int = 0  # pods that exist (they hold their GPUs until they are gone)
    unschedulable: str | None = None  # the scheduler's message when a pod cannot be placed

    @property
    def is_ready(self) -> bool:
        return (
            self.exists
            and self.desired > 0
            and self.ready >= self.desired
            and (self.updated >= self.desired)
        )


@dataclass(frozen=True)
class Replicas:
    stable: int
    canary: int

    @property
    def canary_percent(self) -> int:
        """The canary's share of these pods, in percent."""
        pods = self.stable + self.canary
        return round(100 * self.canary / pods) if pods else 0


def split(total: int, weight: int) -> Replicas:
    """The pods of each track that come closest to ``weight`` percent on the canary: at least
    one canary pod above 0%, at least one stable pod below 100% (one replica: one pod each)."""
    if weight <= 0:
        return Replicas(stable=total, canary=0)
    if weight >= 100:
        return Replicas(stable=0, canary=total)
    canary = min(max(1, round(total * weight / 100)), max(1, total - 1))
    return Replicas(stable=max(1, total - canary), canary=canary)


def shift(
    total: int,
    surge: int,
    stable: TrackObservation,
    canary: TrackObservation,
    want_canary: int,
    *,
    want_stable: int | None = None,
) -> Replicas:
    """The next replica counts on the way to ``want_canary`` canary pods and ``want_stable``
    (default ``total - want_canary``) stable pods, never above ``total + surge`` pods."""
    if want_stable is None:
        want_stable = total - want_canary
    budget = total + surge
    pods_now = max(stable.pods, stable.desired) + max(canary.pods, canary.desired)
    room = max(0, budget - pods_now)
    s_next, c_next = stable.desired, canary.desired
    if c_next < want_canary:
        grow = min(want_canary - c_next, room)
        c_next, room = c_next + grow, room - grow
    if s_next < want_stable:
        grow = min(want_stable - s_next, room)
        s_next, room = s_next + grow, room - grow
    if c_next > want_canary:  # shrink only as far as stable's Ready pods cover
        c_next = max(want_canary, min(c_next, total - stable.ready))
    if s_next > want_stable:  # shrink only as far as the canary's Ready pods cover
        s_next = max(want_stable, min(s_next, total - canary.ready))
    return Replicas(stable=s_next, canary=c_next)
