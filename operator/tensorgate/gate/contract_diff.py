"""The contract diff: how the candidate's served signature differs from the stable model's.

Pure functions over two ``Signature``s (what ``GetModelMetadata`` answered for each). A
tensor that disappears from one role while another with the same dtype and shape appears is
reported as a rename; everything else is an addition, a removal, or a dtype, rank or fixed
dimension change. Smoke inference puts the diff in its report, and when the candidate lacks an
input the contract needs, in the failing ``signature`` check's message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tensorgate.serving.base import Signature, TensorInfo

__all__ = ["ContractDiff", "TensorChange", "diff_signatures"]


def _shape(info: TensorInfo) -> str:
    return "unknown rank" if info.shape is None else str(list(info.shape))


@dataclass(frozen=True)
class TensorChange:
    """One difference: ``kind`` is added, removed, renamed, dtype, rank or dims."""

    role: str  # "input" or "output"
    kind: str
    name: str
    stable: str | None = None
    candidate: str | None = None

    @property
    def message(self) -> str:
        if self.kind == "added":
            return f"{self.role} {self.name} added ({self.candidate})"
        if self.kind == "removed":
            return f"{self.role} {self.name} removed (was {self.stable})"
        if self.kind == "renamed":
            return f"{self.role} {self.name} renamed to {self.candidate}"
        return f"{self.role} {self.name}: {self.kind} {self.stable} -> {self.candidate}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "kind": self.kind,
            "name": self.name,
            "stable": self.stable,
            "candidate": self.candidate,
            "message": self.message,
        }


@dataclass(frozen=True)
class ContractDiff:
    """Every change from the stable signature to the candidate's (empty: the same)."""

    changes: tuple[TensorChange, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def lines(self) -> list[str]:
        return [c.message for c in self.changes]

    def summary(self) -> str:
        return "; ".join(self.lines()) if self.changes else "no change"

    def to_dict(self) -> dict[str, Any]:
        return {"changed": not self.is_empty, "changes": [c.to_dict() for c in self.changes]}


def _describe(info: TensorInfo) -> str:
    return f"{info.dtype} {_shape(info)}"


def _role(
    role: str, stable: Mapping[str, TensorInfo], candidate: Mapping[str, TensorInfo]
) -> list[TensorChange]:
    changes: list[TensorChange] = []
    removed = sorted(set(stable) - set(candidate))
    added = sorted(set(candidate) - set(stable))
    for old in list(removed):
        twin = next((new for new in added if candidate[new] == stable[old]), None)
        if twin is not None:
            changes.append(TensorChange(role, "renamed", old, old, twin))
            removed.remove(old)
            added.remove(twin)
    changes += [TensorChange(role, "removed", n, _describe(stable[n])) for n in removed]
    changes += [TensorChange(role, "added", n, None, _describe(candidate[n])) for n in added]
    for name in sorted(set(stable) & set(candidate)):
        s, c = stable[name], candidate[name]
        if s.dtype != c.dtype:
            changes.append(TensorChange(role, "dtype", name, s.dtype, c.dtype))
        if s.shape is None or c.shape is None:
            if (s.shape is None) != (c.shape is None):
                changes.append(TensorChange(role, "rank", name, _shape(s), _shape(c)))
        elif len(s.shape) != len(c.shape):
            changes.append(TensorChange(role, "rank", name, _shape(s), _shape(c)))
        elif s.shape != c.shape:
            changes.append(TensorChange(role, "dims", name, _shape(s), _shape(c)))
    return changes


def diff_signatures(stable: Signature, candidate: Signature) -> ContractDiff:
    """The changes from ``stable`` to ``candidate``, inputs first, in name order."""
    return ContractDiff(
        tuple(
            _role("input", stable.inputs, candidate.inputs)
            + _role("output", stable.outputs, candidate.outputs)
        )
    )
