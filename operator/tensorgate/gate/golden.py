"""The labelled golden set: one ``.npz`` with an array per contract input, integer labels and,
optionally, ``expected_<output>`` arrays that the training pipeline produced (for parity).

Loading validates everything up front and raises ``ConfigError`` (exit 2 in the CLI) with a
message that names the array, what it holds and what the contract expects.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorgate.api.spec import ContractSpec, GoldenSetSpec, TensorSpec
from tensorgate.errors import ConfigError

__all__ = ["EXPECTED_PREFIX", "GoldenSet", "load_golden", "read_npz"]

EXPECTED_PREFIX = "expected_"


@dataclass(frozen=True)
class GoldenSet:
    """Inputs by contract input name, labels (``(n,)`` int64 or None), expected outputs."""

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None
    expected: Mapping[str, np.ndarray]
    slices: np.ndarray | None = None  # (n,) slice ids as strings (analysis.slices)
    unlabeled: Mapping[str, np.ndarray] | None = None  # production inputs (goldenSet.unlabeled)

    @property
    def size(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def head(self, count: int) -> dict[str, np.ndarray]:
        """The first ``count`` samples' inputs, cycling when the set is smaller."""
        index = np.arange(count) % self.size
        return {k: v[index] for k, v in self.inputs.items()}


def read_npz(source: str | Path | bytes) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` (a path or its bytes); no pickles."""
    where = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        data = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
        with np.load(data, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError as exc:
        raise ConfigError(f"golden set {where}: no such file") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"golden set {where}: not a readable .npz ({exc})") from exc


def _numpy_dtype(spec: TensorSpec) -> np.dtype[np.generic]:
    return np.dtype(object) if spec.dtype == "string" else np.dtype(str(spec.dtype))


def _fits(shape: tuple[int, ...], declared: list[int]) -> bool:
    if len(shape) != len(declared):
        return False
    return all(d in (-1, s) for s, d in zip(shape[1:], declared[1:], strict=True))


def load_golden(
    source: str | Path | bytes | Mapping[str, np.ndarray],
    contract: ContractSpec,
    spec: GoldenSetSpec | None = None,
    *,
    require_labels: bool = True,
    slices: str | None = None,
) -> GoldenSet:
    """Validate a golden set against the contract and cast inputs to the declared dtypes."""
    arrays = dict(source) if isinstance(source, Mapping) else read_npz(source)
    available = sorted(arrays)
    inputs: dict[str, np.ndarray] = {}
    for name, tensor in contract.inputs.items():
        key = name
        if spec is not None and spec.features and len(contract.inputs) == 1:
            key = spec.features
        if key not in arrays:
            raise ConfigError(
                f"golden set: no array {key!r} for contract input {name!r} (arrays: {available})"
            )
        arr = np.asarray(arrays[key])
        if not _fits(arr.shape, tensor.shape):
            raise ConfigError(
                f"golden set: array {key!r} has shape {list(arr.shape)}, which does not fit "
                f"contract input {name!r} {tensor.shape}"
            )
        try:
            inputs[name] = arr.astype(_numpy_dtype(tensor), casting="same_kind")
        except TypeError as exc:
            raise ConfigError(
                f"golden set: array {key!r} is {arr.dtype}; contract input {name!r} is "
                f"{tensor.dtype} ({exc})"
            ) from exc

    label_key = spec.labels if spec is not None else "labels"
    labels: np.ndarray | None = None
    if label_key in arrays:
        raw = np.asarray(arrays[label_key])
        if raw.ndim == 2 and raw.shape[1] == 1:
            raw = raw[:, 0]  # an (n, 1) column: flatten explicitly, never broadcast
        if raw.ndim != 1:
            raise ConfigError(
                f"golden set: labels {label_key!r} have shape {list(raw.shape)}; expected (n,) "
                "integer class ids"
            )
        if raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
            raw = raw.astype(np.int64)
        if raw.dtype.kind not in "iub":
            raise ConfigError(
                f"golden set: labels {label_key!r} are {raw.dtype}; expected integer class ids"
            )
        labels = raw.astype(np.int64)
    elif require_labels:
        raise ConfigError(f"golden set: no labels array {label_key!r} (arrays: {available})")

    expected = {
        name: np.asarray(arrays[EXPECTED_PREFIX + name])
        for name in contract.outputs
        if EXPECTED_PREFIX + name in arrays
    }

    unlabeled: dict[str, np.ndarray] | None = None
    if spec is not None and spec.unlabeled is not None:
        unlabeled = {}
        for name, tensor in contract.inputs.items():
            key = spec.unlabeled + name
            found = np.asarray(arrays[key]) if key in arrays else None
            if found is None or not _fits(found.shape, tensor.shape) or found.shape[0] == 0:
                raise ConfigError(
                    f"golden set: goldenSet.unlabeled needs a non-empty array {key!r} shaped "
                    f"like contract input {name!r} {tensor.shape} (arrays: {available})"
                )
            unlabeled[name] = found.astype(_numpy_dtype(tensor), casting="same_kind")
        if len({v.shape[0] for v in unlabeled.values()}) != 1:
            raise ConfigError("golden set: the goldenSet.unlabeled arrays disagree on the count")

    slice_ids: np.ndarray | None = None
    if slices is not None:
        if slices not in arrays or np.asarray(arrays[slices]).ndim != 1:
            raise ConfigError(
                f"golden set: analysis.slices names {slices!r}, which is not a 1-D array "
                f"(arrays: {available})"
            )
        slice_ids = np.asarray(arrays[slices]).astype(str)

    sizes = {f"input {k}": v.shape[0] for k, v in inputs.items()}
    if labels is not None:
        sizes["labels"] = labels.shape[0]
    if slice_ids is not None:
        sizes[f"slices {slices}"] = slice_ids.shape[0]
    sizes.update({f"{EXPECTED_PREFIX}{k}": v.shape[0] for k, v in expected.items()})
    if len(set(sizes.values())) != 1:
        raise ConfigError(f"golden set: arrays disagree on the sample count: {sizes}")
    if next(iter(sizes.values())) == 0:
        raise ConfigError("golden set: no samples")

    limit = spec.max_samples if spec is not None else None
    if limit is not None:
        inputs = {k: v[:limit] for k, v in inputs.items()}
        labels = labels[:limit] if labels is not None else None
        expected = {k: v[:limit] for k, v in expected.items()}
        slice_ids = slice_ids[:limit] if slice_ids is not None else None
    return GoldenSet(
        inputs=inputs, labels=labels, expected=expected, slices=slice_ids, unlabeled=unlabeled
    )
