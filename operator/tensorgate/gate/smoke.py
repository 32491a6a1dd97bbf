"""Smoke inference: does the served candidate honour its declared shape contract?

Checks, in order (each reported as a ``Check`` with a message that gives observed vs
expected; a check that cannot run because an earlier one failed is left out):

``signature``
    The served signature has every contract input and output, with the declared dtype, rank
    and fixed dimensions. ``-1`` in the contract matches anything; a served ``-1`` where the
    contract fixes a size is accepted here and proved by the output shapes below. The served
    signature may not need inputs the contract does not declare.
``batch-1-shape`` / ``batch-n-shape``
    Every contract output answered for 1 and for N (``smoke.batchSize``) samples has shape
    ``[batch, <contract dims>]``: ``output probabilities: expected shape [1, 10], got [1, 1]``.
``finite``
    No NaN/Inf in any smoke output nor anywhere in the golden set's outputs.
``batch-invariance``
    Each of the N samples scored alone gives what it gave inside the batch, within
    ``smoke.batchTolerance`` (scaled by ``max(1, |value|)``). Broadcasting bugs and
    batch-statistics at inference show up here.
``probabilities``
    Outputs of ``kind: probabilities`` lie in [0, 1] and rows of width > 1 sum to 1 within
    ``smoke.probabilityTolerance`` (smoke batch and golden set).
``parity``
    When the golden set carries ``expected_<output>`` arrays (what the training pipeline
    produced), the served outputs reproduce them within ``goldenSet.parityTolerance``
    (scaled by ``max(1, |expected|)``).
``timeout``
    Only when the smoke calls (metadata, the batch-1, batch-N and single-sample predicts)
    took longer than ``smoke.timeout`` in all: the run stops there and this check fails (a
    hung or slow server). Scoring the golden set is not counted: it is bounded by the
    client's per-request timeout and retries.

Inputs come from the golden set (its first N samples) or, without one, are synthesised from
the contract. Nothing here depends on a particular model: names, sizes and kinds come from
the contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from tensorgate.api.spec import ContractSpec, OutputKind, SmokeSpec, TensorSpec, parse_duration_s
from tensorgate.gate.contract_diff import ContractDiff, diff_signatures
from tensorgate.gate.golden import GoldenSet
from tensorgate.gate.report import Check, SmokeReport
from tensorgate.serving.base import (
    ModelClient,
    ModelMetadata,
    ServingRejectedError,
    Signature,
    predict_batched,
)

__all__ = [
    "SmokeResult",
    "check_signature",
    "expected_shape",
    "run_smoke",
    "synthetic_inputs",
]

SIGNATURE = "signature"
BATCH_1 = "batch-1-shape"
BATCH_N = "batch-n-shape"
FINITE = "finite"
BATCH_INVARIANCE = "batch-invariance"
PROBABILITIES = "probabilities"
PARITY = "parity"
GOLDEN_SCORING = "golden-set"
TIMEOUT = "timeout"

T = TypeVar("T")

_FLOAT_KINDS = "fc"


@dataclass(frozen=True)
class SmokeResult:
    """The report, plus the candidate's outputs on the whole golden set (for the canary)."""

    report: SmokeReport
    golden_outputs: Mapping[str, np.ndarray] | None = None


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _same_dtype(served: str, declared: str) -> bool:
    return served == declared


def check_signature(meta: ModelMetadata, contract: ContractSpec) -> tuple[Check, bool]:
    """Compare the served signature with the contract; also say whether predict can be called."""
    sig: Signature | None = meta.signatures.get(contract.signature)
    if sig is None:
        names = sorted(meta.signatures)
        return Check(
            SIGNATURE,
            False,
            f"signature {contract.signature!r} not served (served: {names})",
        ), False
    problems: list[str] = []
    can_call = True
    for role, declared, served in (
        ("input", contract.inputs, sig.inputs),
        ("output", contract.outputs, sig.outputs),
    ):
        for name, want in declared.items():
            got = served.get(name)
            if got is None:
                problems.append(f"{role} {name}: missing (served {role}s: {sorted(served)})")
                if role == "input":
                    can_call = False
                continue
            if not _same_dtype(got.dtype, str(want.dtype)):
                problems.append(f"{role} {name}: expected dtype {want.dtype}, got {got.dtype}")
                if role == "input":
                    can_call = False
            if got.shape is None:
                continue  # unknown rank: the batch checks prove the shape
            if len(got.shape) != len(want.shape):
                problems.append(
                    f"{role} {name}: expected rank {len(want.shape)} {want.shape}, "
                    f"got rank {len(got.shape)} {list(got.shape)}"
                )
                if role == "input":
                    can_call = False
                continue
            for axis, (w, g) in enumerate(zip(want.shape, got.shape, strict=True)):
                if w != -1 and g != -1 and w != g:
                    problems.append(
                        f"{role} {name}: expected shape {want.shape}, got {list(got.shape)} "
                        f"(dimension {axis})"
                    )
                    if role == "input":
                        can_call = False
                    break
    extra_inputs = sorted(set(sig.inputs) - set(contract.inputs))
    if extra_inputs:
        problems.append(f"served signature needs undeclared input(s) {extra_inputs}")
        can_call = False
    if problems:
        return Check(SIGNATURE, False, "; ".join(problems)), can_call
    return Check(
        SIGNATURE,
        True,
        f"signature {contract.signature!r} matches the contract "
        f"({len(contract.inputs)} input(s), {len(contract.outputs)} output(s))",
    ), True


def expected_shape(spec: TensorSpec, batch: int) -> list[int]:
    return [batch, *spec.shape[1:]]


def _shape_ok(actual: tuple[int, ...], expected: list[int]) -> bool:
    if len(actual) != len(expected):
        return False
    return all(e in (-1, a) for a, e in zip(actual, expected, strict=True))


def _check_shapes(
    name: str, outputs: Mapping[str, np.ndarray], contract: ContractSpec, batch: int
) -> Check:
    problems = []
    for out_name, spec in contract.outputs.items():
        want = expected_shape(spec, batch)
        if out_name not in outputs:
            problems.append(f"output {out_name}: missing from the answer (got {sorted(outputs)})")
            continue
        got = tuple(outputs[out_name].shape)
        if not _shape_ok(got, want):
            problems.append(f"output {out_name}: expected shape {want}, got {list(got)}")
        elif str(spec.dtype) != "string" and not _numeric(outputs[out_name]):
            problems.append(
                f"output {out_name}: expected dtype {spec.dtype}, got values that are not "
                f"numbers ({outputs[out_name].dtype})"
            )
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"every output has the declared shape for a batch of {batch}")


def synthetic_inputs(contract: ContractSpec, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs shaped by the contract (unknown non-batch dims become 1)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, spec in contract.inputs.items():
        shape = [count, *(d if d > 0 else 1 for d in spec.shape[1:])]
        dtype = str(spec.dtype)
        if dtype.startswith("float"):
            out[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == "bool":
            out[name] = rng.integers(0, 2, shape).astype(bool)
        elif dtype == "string":
            out[name] = np.full(shape, "", dtype=object)
        else:
            out[name] = rng.integers(0, 2, shape).astype(dtype)
    return out


def _numeric(arr: np.ndarray) -> bool:
    return arr.dtype.kind in "fciub"


def _by_row(arr: np.ndarray) -> np.ndarray:
    """One row per sample (``reshape(n, -1)``, which numpy refuses for zero rows)."""
    return arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))


def _nonfinite_rows(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind not in _FLOAT_KINDS or arr.ndim == 0:
        return np.zeros(arr.shape[:1] if arr.ndim else (1,), dtype=bool)
    flat = _by_row(arr)
    result: np.ndarray = ~np.isfinite(flat).all(axis=1)
    return result


def _check_finite(
    smoke_outputs: list[Mapping[str, np.ndarray]],
    golden_outputs: Mapping[str, np.ndarray] | None,
    contract: ContractSpec,
) -> Check:
    problems = []
    for out_name in contract.outputs:
        bad_smoke = sum(
            int(_nonfinite_rows(o[out_name]).sum()) for o in smoke_outputs if out_name in o
        )
        if bad_smoke:
            problems.append(f"output {out_name}: non-finite values in {bad_smoke} smoke sample(s)")
        if golden_outputs is not None and out_name in golden_outputs:
            rows = _nonfinite_rows(golden_outputs[out_name])
            if rows.any():
                first = int(np.argmax(rows))
                problems.append(
                    f"output {out_name}: non-finite values in {int(rows.sum())} of {rows.size} "
                    f"golden-set samples (first: sample {first})"
                )
    if problems:
        return Check(FINITE, False, "; ".join(problems))
    where = "smoke and golden-set outputs" if golden_outputs is not None else "smoke outputs"
    return Check(FINITE, True, f"all {where} are finite")


def _scaled_excess(a: np.ndarray, b: np.ndarray, tolerance: float) -> tuple[float, np.ndarray]:
    """Max |a - b| and, per row, whether |a - b| > tolerance * max(1, |b|) anywhere."""
    a64 = _by_row(a.astype(np.float64))
    b64 = _by_row(b.astype(np.float64))
    with np.errstate(invalid="ignore"):
        diff = np.abs(a64 - b64)
        bad: np.ndarray = np.asarray(~(diff <= tolerance * np.maximum(1.0, np.abs(b64))))
    max_diff = float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan")
    rows = np.asarray(bad.any(axis=1), dtype=bool)
    return max_diff, rows


async def _check_batch_invariance(
    client: ModelClient,
    sample: Mapping[str, np.ndarray],
    batch_out: Mapping[str, np.ndarray],
    contract: ContractSpec,
    tolerance: float,
) -> Check:
    n = next(iter(sample.values())).shape[0]

    async def alone(i: int) -> dict[str, np.ndarray]:
        return await client.predict({k: v[i : i + 1] for k, v in sample.items()})

    singles = await asyncio.gather(*(alone(i) for i in range(n)))
    problems = []
    for out_name in contract.outputs:
        if out_name not in batch_out or not _numeric(batch_out[out_name]):
            continue
        try:
            stacked = np.concatenate([s[out_name] for s in singles], axis=0)
        except (KeyError, ValueError):
            problems.append(f"output {out_name}: single-sample answers cannot be stacked")
            continue
        batched = batch_out[out_name]
        if stacked.shape != batched.shape:
            problems.append(
                f"output {out_name}: {n} samples alone give shape {list(stacked.shape)}, "
                f"in a batch {list(batched.shape)}"
            )
            continue
        max_diff, rows = _scaled_excess(stacked, batched, tolerance)
        if rows.any():
            worst = int(np.argmax(rows))
            problems.append(
                f"output {out_name}: {int(rows.sum())} of {n} samples differ alone vs in a "
                f"batch of {n} (max difference {_fmt(max_diff)} > batchTolerance "
                f"{_fmt(tolerance)}; first: sample {worst})"
            )
    if problems:
        return Check(BATCH_INVARIANCE, False, "; ".join(problems))
    return Check(
        BATCH_INVARIANCE,
        True,
        f"{n} samples give the same outputs alone and in a batch (within {_fmt(tolerance)})",
    )


def _check_probabilities(
    arrays: list[Mapping[str, np.ndarray]], contract: ContractSpec, tolerance: float
) -> Check | None:
    names = [n for n, s in contract.outputs.items() if s.kind == OutputKind.PROBABILITIES]
    if not names:
        return None
    problems = []
    for out_name in names:
        parts = [
            a[out_name]
            for a in arrays
            if out_name in a and a[out_name].ndim >= 1 and _numeric(a[out_name])
        ]
        if not parts:
            continue
        rows = np.concatenate([_by_row(p) for p in parts], axis=0)
        rows = rows.astype(np.float64)
        finite = np.isfinite(rows).all(axis=1)
        rows = rows[finite]
        if rows.size == 0:
            continue
        low, high = float(rows.min()), float(rows.max())
        if low < -tolerance or high > 1.0 + tolerance:
            problems.append(
                f"output {out_name}: values range {_fmt(low)}..{_fmt(high)}, expected 0..1"
            )
        if rows.shape[1] > 1:
            sums = rows.sum(axis=1)
            off = np.abs(sums - 1.0) > tolerance
            if off.any():
                problems.append(
                    f"output {out_name}: {int(off.sum())} of {sums.size} rows do not sum to 1 "
                    f"(sums {_fmt(float(sums.min()))}..{_fmt(float(sums.max()))}, "
                    f"probabilityTolerance {_fmt(tolerance)})"
                )
    if problems:
        return Check(PROBABILITIES, False, "; ".join(problems))
    return Check(
        PROBABILITIES,
        True,
        f"probabilities lie in [0, 1] and rows sum to 1 within {_fmt(tolerance)}",
    )


def _check_parity(
    golden: GoldenSet, outputs: Mapping[str, np.ndarray], tolerance: float
) -> Check | None:
    if not golden.expected:
        return None
    problems = []
    for out_name, expected in golden.expected.items():
        served = outputs.get(out_name)
        if served is None:
            problems.append(f"output {out_name}: not answered, expected_{out_name} given")
            continue
        if served.size != expected.size:
            problems.append(
                f"output {out_name}: served shape {list(served.shape)} vs expected_{out_name} "
                f"shape {list(expected.shape)}"
            )
            continue
        max_diff, rows = _scaled_excess(served.reshape(expected.shape), expected, tolerance)
        if rows.any():
            problems.append(
                f"output {out_name}: {int(rows.sum())} of {rows.size} golden samples differ "
                f"from expected_{out_name} (max |served - expected| {_fmt(max_diff)} > "
                f"parityTolerance {_fmt(tolerance)}; first: sample {int(np.argmax(rows))})"
            )
    if problems:
        return Check(PARITY, False, "; ".join(problems))
    names = ", ".join(sorted(golden.expected))
    return Check(
        PARITY,
        True,
        f"served {names} reproduce the training pipeline on {golden.size} samples "
        f"(within {_fmt(tolerance)})",
    )


async def _try_predict(
    client: ModelClient, inputs: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray] | None, str]:
    try:
        return await client.predict(inputs), ""
    except ServingRejectedError as exc:
        return None, str(exc)


class _OutOfTime(Exception):
    """The smoke calls spent ``smoke.timeout``."""


class _Budget:
    """What is left of ``smoke.timeout``; only the calls passed to ``spend`` use it up."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    async def spend(self, call: Awaitable[T]) -> T:
        loop = asyncio.get_running_loop()
        started = loop.time()
        scope = asyncio.timeout(max(self.left, 0.0))
        try:
            async with scope:
                return await call
        except TimeoutError as exc:
            if scope.expired():
                raise _OutOfTime from exc
            raise
        finally:
            self.left -= loop.time() - started


async def run_smoke(
    client: ModelClient,
    contract: ContractSpec,
    smoke: SmokeSpec,
    golden: GoldenSet | None = None,
    *,
    parity_tolerance: float = 1e-3,
    score_golden: bool = True,
    on_progress: Callable[[int], None] | None = None,
    stable_signature: Signature | None = None,
) -> SmokeResult:
    """Run every smoke check against ``client``; with a golden set, score all of it too.

    With ``stable_signature`` (the stable model's served signature) the report carries the
    contract diff, and a failed signature check names it.

    Raises ``ServingError`` only when the server cannot be asked at all (metadata fails);
    a request the server rejects becomes a failed check, and so do smoke calls that take
    longer than ``smoke.timeout`` in all (the ``timeout`` check).
    """
    checks: list[Check] = []
    try:
        return await _smoke_checks(
            client,
            contract,
            smoke,
            golden,
            checks,
            _Budget(parse_duration_s(smoke.timeout)),
            parity_tolerance=parity_tolerance,
            score_golden=score_golden,
            on_progress=on_progress,
            stable_signature=stable_signature,
        )
    except _OutOfTime:
        message = (
            f"the smoke calls did not finish within smoke.timeout {smoke.timeout} (the server "
            "hangs or answers too slowly); raise smoke.timeout if the model is slow by design"
        )
        checks.append(Check(TIMEOUT, False, message))
        return SmokeResult(SmokeReport(tuple(checks)))


async def _smoke_checks(
    client: ModelClient,
    contract: ContractSpec,
    smoke: SmokeSpec,
    golden: GoldenSet | None,
    checks: list[Check],
    budget: _Budget,
    *,
    parity_tolerance: float,
    score_golden: bool,
    on_progress: Callable[[int], None] | None,
    stable_signature: Signature | None,
) -> SmokeResult:
    meta = await budget.spend(client.metadata())
    signature_check, can_call = check_signature(meta, contract)
    diff: ContractDiff | None = None
    served = meta.signatures.get(contract.signature)
    if stable_signature is not None and served is not None:
        diff = diff_signatures(stable_signature, served)
        if not signature_check.passed and not diff.is_empty:
            signature_check = Check(
                SIGNATURE,
                False,
                f"{signature_check.message}; changed since the stable model: {diff.summary()}",
            )
    checks.append(signature_check)
    if not can_call:
        return SmokeResult(SmokeReport(tuple(checks), diff))

    n = smoke.batch_size
    sample = golden.head(n) if golden is not None else synthetic_inputs(contract, n)

    one, error = await budget.spend(_try_predict(client, {k: v[:1] for k, v in sample.items()}))
    if one is None:
        checks.append(Check(BATCH_1, False, f"predict with a batch of 1 failed: {error}"))
        return SmokeResult(SmokeReport(tuple(checks), diff))
    checks.append(_check_shapes(BATCH_1, one, contract, 1))

    many, error = await budget.spend(_try_predict(client, sample))
    if many is None:
        checks.append(Check(BATCH_N, False, f"predict with a batch of {n} failed: {error}"))
        return SmokeResult(SmokeReport(tuple(checks), diff))
    checks.append(_check_shapes(BATCH_N, many, contract, n))
    shapes_ok = all(c.passed for c in checks[-2:])

    golden_outputs: dict[str, np.ndarray] | None = None
    if golden is not None and score_golden and shapes_ok:
        try:
            golden_outputs = await predict_batched(client, golden.inputs, on_progress=on_progress)
        except ServingRejectedError as exc:
            checks.append(Check(GOLDEN_SCORING, False, f"scoring the golden set failed: {exc}"))
    if golden_outputs is not None and golden is not None:
        size = golden.size
        bad = [
            f"output {k}: {golden_outputs[k].shape[0]} rows for {size} golden samples"
            for k in contract.outputs
            if k in golden_outputs and golden_outputs[k].shape[0] != size
        ]
        if bad:
            checks.append(Check(GOLDEN_SCORING, False, "; ".join(bad)))
            golden_outputs = None

    checks.append(_check_finite([one, many], golden_outputs, contract))
    if shapes_ok:
        try:
            invariance = _check_batch_invariance(
                client, sample, many, contract, smoke.batch_tolerance
            )
            checks.append(await budget.spend(invariance))
        except ServingRejectedError as exc:
            checks.append(Check(BATCH_INVARIANCE, False, f"single-sample predict failed: {exc}"))
    probability_arrays: list[Mapping[str, np.ndarray]] = [many]
    if golden_outputs is not None:
        probability_arrays.append(golden_outputs)
    prob_check = _check_probabilities(probability_arrays, contract, smoke.probability_tolerance)
    if prob_check is not None:
        checks.append(prob_check)
    if golden is not None and golden_outputs is not None:
        parity_check = _check_parity(golden, golden_outputs, parity_tolerance)
        if parity_check is not None:
            checks.append(parity_check)
    return SmokeResult(SmokeReport(tuple(checks), diff), golden_outputs)
