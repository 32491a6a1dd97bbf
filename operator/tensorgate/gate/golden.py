"""The labelled golden set: one ``.npz`` with an array per contract input, integer labels and,
optionally, ``expected_<output>`` arrays that the training pipeline produced (for parity).

Loading validates everything up front and raises ``ConfigError`` (exit 2 in the CLI) with a
message that names the array, what it holds and what the contract expects.

Reading is bounded before anything is allocated: at most :data:`MAX_GOLDEN_BYTES` on disk, only
regular files (``/dev/zero`` and FIFOs are refused without a blocking read), and at most
:data:`MAX_GOLDEN_DECOMPRESSED_BYTES` once inflated, checked against the zip headers *and* each
``.npy`` header (shape x itemsize) before a byte is inflated; object (pickle) arrays are never
loaded. A truncated zip, a bad CRC, a bare ``.npy`` or an empty file is a ``ConfigError`` too.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from numpy.lib import format as npy_format

from tensorgate.api.manifest_io import MAX_GOLDEN_BYTES, read_golden_file
from tensorgate.api.spec import ContractSpec, GoldenSetSpec, TensorSpec
from tensorgate.errors import ConfigError

__all__ = [
    "EXPECTED_PREFIX",
    "MAX_GOLDEN_BYTES",
    "MAX_GOLDEN_DECOMPRESSED_BYTES",
    "GoldenSet",
    "golden_rows",
    "load_golden",
    "read_golden_file",
    "read_npz",
]

EXPECTED_PREFIX = "expected_"
"""Largest golden-set file read (compressed size on disk or in a ConfigMap)."""
MAX_GOLDEN_DECOMPRESSED_BYTES = 128 * 1024 * 1024
"""Largest total size of a golden set's arrays once inflated (the operator pod has 512 Mi)."""
MAX_ARRAYS = 64
MIN_SAMPLES = 2
"""Fewest samples a golden set may hold: a paired comparison of one sample says nothing."""
_NPY_MAGIC = b"\x93NUMPY"


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


def _read_header(handle: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[np.generic]]:
    """A ``.npy`` member's shape, order and dtype, read without inflating its data."""
    version = npy_format.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(handle)
    elif version in {(2, 0), (3, 0)}:
        shape, fortran, dtype = npy_format.read_array_header_2_0(handle)
    else:  # pragma: no cover - read_magic refuses other versions
        raise ValueError(f"unsupported .npy version {version}")
    return tuple(int(d) for d in shape), bool(fortran), dtype


def golden_rows(data: bytes, spec: GoldenSetSpec) -> int:
    """The rows the accuracy gate will score (``goldenSet.maxSamples`` applied), read from the
    labels array's ``.npy`` header alone: no array is inflated. ``ConfigError`` when the
    labels cannot be found or read (``load_golden`` names the problem at evaluation)."""
    member = f"{spec.labels}.npy"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf, zf.open(member) as raw:
            shape, _, _ = _read_header(raw)
    except (KeyError, OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise ConfigError(f"golden set: cannot read the {member} header ({exc})") from exc
    if not shape:
        raise ConfigError(f"golden set: labels {spec.labels!r} are a scalar")
    rows = shape[0]
    return rows if spec.max_samples is None else min(rows, spec.max_samples)


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, budget: int) -> np.ndarray:
    """One ``.npy`` member, its header checked before its data is inflated."""
    name = info.filename
    with zf.open(info) as raw:
        handle: IO[bytes] = raw
        shape, fortran, dtype = _read_header(handle)
        if dtype.hasobject:
            raise ConfigError(
                f"golden set {where}: array {name!r} holds Python objects (a pickle); "
                "it is never loaded: save numeric or string arrays"
            )
        count = 1
        for dim in shape:
            count *= int(dim)
        size = count * dtype.itemsize
        if size > budget:
            raise ConfigError(
                f"golden set {where}: array {name!r} declares {list(shape)} x "
                f"{dtype.itemsize} bytes = {size} bytes > the remaining limit {budget}"
            )
        data = handle.read(size + 1)
    if len(data) != size:
        raise ConfigError(
            f"golden set {where}: array {name!r} holds {len(data)} bytes of data; "
            f"its header declares {size} (a corrupt or truncated .npy)"
        )
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


def read_npz(
    source: str | Path | bytes,
    *,
    max_bytes: int = MAX_GOLDEN_BYTES,
    max_decompressed_bytes: int = MAX_GOLDEN_DECOMPRESSED_BYTES,
) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` (a path or its bytes) within the limits; no pickles."""
    where = "<bytes>" if isinstance(source, bytes) else str(source)
    # bytes were bounded by whoever fetched them (a ConfigMap is < 1 MiB; object storage
    # honours --golden-max-bytes); what they inflate to is bounded below
    data = source if isinstance(source, bytes) else read_golden_file(source, max_bytes)
    if not data:
        raise ConfigError(f"golden set {where}: empty file; expected an .npz (np.savez)")
    if data.startswith(_NPY_MAGIC):
        raise ConfigError(
            f"golden set {where}: a bare .npy array, not a readable .npz; save the arrays "
            "with np.savez(path, x=..., labels=...)"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.infolist()
            if len(members) > MAX_ARRAYS:
                raise ConfigError(f"golden set {where}: {len(members)} arrays > limit {MAX_ARRAYS}")
            declared = sum(m.file_size for m in members)
            if declared > max_decompressed_bytes:
                raise ConfigError(
                    f"golden set {where}: inflates to {declared} bytes (zip headers) > limit "
                    f"{max_decompressed_bytes}; use fewer samples"
                )
            arrays: dict[str, np.ndarray] = {}
            budget = max_decompressed_bytes
            for info in members:
                if info.is_dir():
                    continue
                key = info.filename.removesuffix(".npy")
                if key in arrays:
                    raise ConfigError(f"golden set {where}: array {key!r} appears twice")
                arrays[key] = _read_member(zf, info, where, budget)
                budget -= arrays[key].nbytes
            return arrays
    except ConfigError:
        raise
    except zipfile.BadZipFile as exc:
        raise ConfigError(
            f"golden set {where}: not a readable .npz (corrupt or truncated zip: {exc})"
        ) from exc
    except (
        OSError,
        EOFError,
        ValueError,
        RuntimeError,
        NotImplementedError,
        zlib.error,
        zipfile.LargeZipFile,
    ) as exc:
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
        if raw.dtype.kind == "f" and not np.all(np.isfinite(raw)):
            raise ConfigError(
                f"golden set: labels {label_key!r} hold NaN or infinity; expected integer class ids"
            )
        if raw.dtype.kind == "f" and np.all(raw == np.round(raw)) and np.all(np.abs(raw) < 2**53):
            raw = raw.astype(np.int64)
        if raw.dtype.kind not in "iub":
            raise ConfigError(
                f"golden set: labels {label_key!r} are {raw.dtype}; expected integer class ids"
            )
        if raw.dtype.kind == "u" and raw.size and int(raw.max()) > np.iinfo(np.int64).max:
            raise ConfigError(
                f"golden set: labels {label_key!r} hold {int(raw.max())}, beyond int64; "
                "expected class ids"
            )
        labels = raw.astype(np.int64)
    elif require_labels:
        raise ConfigError(f"golden set: no labels array {label_key!r} (arrays: {available})")

    expected = {
        name: np.asarray(arrays[EXPECTED_PREFIX + name])
        for name in contract.outputs
        if EXPECTED_PREFIX + name in arrays
    }
    for name, value in expected.items():
        if value.ndim == 0 or value.dtype.kind not in "iufb":
            raise ConfigError(
                f"golden set: array {EXPECTED_PREFIX + name!r} is a {value.dtype} array of "
                f"shape {list(value.shape)}; expected one numeric row per sample"
            )

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
    if next(iter(sizes.values())) < MIN_SAMPLES:
        raise ConfigError(
            f"golden set: {next(iter(sizes.values()))} sample; need at least {MIN_SAMPLES} "
            "for a paired comparison"
        )

    limit = spec.max_samples if spec is not None else None
    if limit is not None:
        inputs = {k: v[:limit] for k, v in inputs.items()}
        labels = labels[:limit] if labels is not None else None
        expected = {k: v[:limit] for k, v in expected.items()}
        slice_ids = slice_ids[:limit] if slice_ids is not None else None
    return GoldenSet(
        inputs=inputs, labels=labels, expected=expected, slices=slice_ids, unlabeled=unlabeled
    )
