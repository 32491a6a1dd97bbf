"""Replayable verdicts: recompute a stored gate verdict from what it was decided from.

Every gate result in the ledger keeps ``inputs`` (``ledger.base.verdict_inputs``): the whole
``status.gate`` and the spec's margin and confidence. :func:`replay_inputs` flattens them
into the numbers a verdict is a function of; :func:`recompute_verdict` is THE one place that
turns them into ``"promote"`` or ``"rollback"``; :func:`verify_record` compares that with the
stored decision (``tensorgate history --verify``).

:func:`recompute_verdict` replays ``status.gate.verdict`` with the engine's
``replay_verdict`` where the gate recorded it, and recomputes older rows with
``noninferiority`` and the method they were decided with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tensorgate.engine.stats import METHODS, noninferiority, replay_verdict
from tensorgate.ledger.base import RolloutRecord

PROMOTE = "promote"
ROLLBACK = "rollback"
REPLAYABLE_METHODS = frozenset(METHODS)
# What rows recorded before the gate named its method were decided with.
LEGACY_METHOD = "tango-score"
BOUND_TOLERANCE = 1e-9

# Names the gate's status may use for the discordant counts (first found wins).
_B_KEYS = ("b", "stableOnlyCorrect", "discordantStableOnly")
_C_KEYS = ("c", "candidateOnlyCorrect", "discordantCandidateOnly")
_MARGIN_KEYS = ("margin", "maxAccuracyDrop")
_CONFIDENCE_KEYS = ("confidence",)


def _first(sources: tuple[Mapping[str, Any], ...], keys: tuple[str, ...]) -> Any:
    for source in sources:
        for key in keys:
            if source.get(key) is not None:
                return source[key]
    return None


def replay_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The stored inputs, flat: ``n``, ``b``, ``c``, ``margin``, ``confidence``, ``method``,
    ``slices``, ``upperBound``, ``smokePassed``, ``compared``, ``otherFailures``.

    A number the gate recorded wins over the spec's (the gate knows what it used).
    """
    gate: Mapping[str, Any] = inputs.get("gate") or {}
    spec: Mapping[str, Any] = inputs.get("spec") or {}
    discordant = gate.get("discordant") if isinstance(gate.get("discordant"), Mapping) else {}
    assert isinstance(discordant, Mapping)
    reasons = [str(r) for r in gate.get("reasons") or ()]
    smoke = [c for c in gate.get("smoke") or () if isinstance(c, Mapping)]
    return {
        "n": _first((gate,), ("n", "samples")),
        "b": _first((discordant, gate), _B_KEYS),
        "c": _first((discordant, gate), _C_KEYS),
        "margin": _first((gate, spec), _MARGIN_KEYS),
        "confidence": _first((gate, spec), _CONFIDENCE_KEYS),
        "method": gate.get("method"),
        "verdict": gate.get("verdict") if isinstance(gate.get("verdict"), Mapping) else None,
        "slices": gate.get("slices"),
        "upperBound": gate.get("upperBound"),
        "smokePassed": gate.get("smokePassed"),
        "compared": gate.get("compared"),
        # checks of the comparison other than the statistic (e.g. finite outputs): a rollback
        # for one of these is not the statistic's to explain
        "otherFailures": [r for r in reasons if r.startswith("canary check ")]
        + [str(c.get("name")) for c in smoke if c.get("passed") is False],
    }


@dataclass(frozen=True)
class Replayed:
    verdict: str
    detail: str


def recompute_verdict(flat: Mapping[str, Any]) -> Replayed:
    """``"promote"`` or ``"rollback"`` from :func:`replay_inputs`' numbers.

    A gate that recorded its verdict inputs (``status.gate.verdict``) is replayed by the
    engine's ``replay_verdict`` (slices and agreement included); older rows are recomputed
    from their counts with the method they name (``tango-score`` when they name none).
    """
    if flat.get("smokePassed") is False or flat.get("otherFailures"):
        return Replayed(ROLLBACK, "failed checks: " + ", ".join(flat.get("otherFailures") or []))
    record = flat.get("verdict")
    if isinstance(record, Mapping):
        verdict = replay_verdict(record)
        return Replayed(
            verdict,
            f"replayed status.gate.verdict (method {record.get('method')}, n={record.get('n')}, "
            f"b={record.get('b')}, c={record.get('c')})",
        )
    n, b, c = flat.get("n"), flat.get("b"), flat.get("c")
    margin, confidence = flat.get("margin"), flat.get("confidence")
    if margin is None:
        raise ValueError("no margin (maxAccuracyDrop) stored")
    method = str(flat.get("method") or LEGACY_METHOD)
    if method not in REPLAYABLE_METHODS:
        known = ", ".join(sorted(REPLAYABLE_METHODS))
        raise ValueError(f"method {method!r} cannot be replayed (known: {known})")
    if n is not None and b is not None and c is not None and confidence is not None:
        result = noninferiority(
            int(b), int(c), int(n), float(margin), float(confidence), method=method
        )
        stored = flat.get("upperBound")
        if stored is not None and not math.isclose(
            float(stored), result.upper_bound, rel_tol=BOUND_TOLERANCE, abs_tol=BOUND_TOLERANCE
        ):
            raise ValueError(
                f"stored upper bound {stored} != recomputed {result.upper_bound:.12g} "
                f"(n={n}, b={b}, c={c}, confidence {confidence})"
            )
        verdict = PROMOTE if result.is_non_inferior else ROLLBACK
        return Replayed(
            verdict,
            f"n={n} b={b} c={c} bound {result.upper_bound:.6f} vs margin {margin}",
        )
    bound = flat.get("upperBound")
    if bound is None:
        raise ValueError("neither discordant counts nor an upper bound stored")
    # Rows from before the gate recorded its discordant counts: the stored bound vs margin.
    verdict = PROMOTE if float(bound) <= float(margin) else ROLLBACK
    return Replayed(verdict, f"bound only (no discordant counts): {bound} vs margin {margin}")


MATCH = "match"
MISMATCH = "mismatch"
UNVERIFIABLE = "unverifiable"


@dataclass(frozen=True)
class Verification:
    """One rollout's stored verdict against its recomputation.

    ``outcome``: ``match``; ``mismatch`` (the inputs replay to another verdict, or are
    inconsistent: ``tensorgate history --verify`` fails); ``unverifiable`` (a row written
    before migration 0002 stored no inputs: reported, not failed).
    """

    record: RolloutRecord
    stored: str | None
    replayed: str | None
    outcome: str
    detail: str

    @property
    def row(self) -> str:
        r = self.record
        return f"rollout {r.id} ({r.rollout_key}, version {r.candidate_version})"


def verify_record(record: RolloutRecord) -> Verification | None:
    """Recompute a rollout's gate verdict; None when it has none to replay (no comparison)."""
    gate = record.gate
    if gate is None or gate.decision is None:
        return None
    if gate.inputs is None:
        return Verification(
            record, gate.decision, None, UNVERIFIABLE, "no inputs stored (written before 0002)"
        )
    flat = replay_inputs(gate.inputs)
    if flat.get("compared") and flat.get("n") is None and flat.get("upperBound") is None:
        return None  # compared without a golden set: nothing was computed
    try:
        replayed = recompute_verdict(flat)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        return Verification(record, gate.decision, None, MISMATCH, str(exc))
    detail = replayed.detail
    verdict_record = flat.get("verdict")
    if isinstance(verdict_record, Mapping) and verdict_record.get("slices"):
        if not verdict_record.get("decideOnSlices"):  # replayed by the engine when they decided
            detail += "; per-slice tests only warned (decideOnSlices false): not in the verdict"
    elif flat.get("slices"):
        detail += "; per-slice tests not replayed (the row has no verdict record)"
    outcome = MATCH if replayed.verdict == gate.decision else MISMATCH
    return Verification(record, gate.decision, replayed.verdict, outcome, detail)
