"""Bad golden sets: one row per bad file, each a ``ConfigError`` with a clear message.

Every row failed before this suite (a traceback, an allocation of the inflated size, a read
that never ends, or a set accepted that should not be). The CLI turns ``ConfigError`` into
exit 2; the operator judges it as a failed check (``checks.py`` catches ``ConfigError``).
"""

from __future__ import annotations

import io
import os
import struct
import threading
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tensorgate.errors import ConfigError
from tensorgate.gate.golden import (
    MAX_GOLDEN_DECOMPRESSED_BYTES,
    load_golden,
    read_golden_file,
    read_npz,
)
from tests.unit.gate.conftest import make_contract

ROOT = Path(__file__).resolve().parents[2]
BOMB = ROOT / "tests" / "fixtures" / "bad_golden" / "inflates-to-1.1GiB.npz"
GOOD = {"x": np.ones((4, 4), np.float32), "labels": np.arange(4)}


def npz(**arrays: object) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def good() -> bytes:
    return npz(**GOOD)


def truncated() -> bytes:
    data = good()
    return data[: len(data) // 2]


def bad_crc() -> bytes:
    """The first member's data with one byte flipped (headers intact)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for key, value in GOOD.items():
            raw = io.BytesIO()
            np.save(raw, value)
            zf.writestr(f"{key}.npy", raw.getvalue())
    data = bytearray(buf.getvalue())
    data[200] ^= 0xFF  # inside x.npy's data (the local header and .npy header are < 200 bytes)
    return bytes(data)


def bare_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, GOOD["x"])
    return buf.getvalue()


def pickled() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=GOOD["x"], labels=np.array([1, "a", None, 2.0], dtype=object))
    return buf.getvalue()


def huge_declared_shape() -> bytes:
    """A tiny member whose .npy header declares 10**12 float64 values."""
    buf = io.BytesIO()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    )
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + b"\0" * 64)
        zf.writestr("labels.npy", b"")
    return buf.getvalue()


def lying_zip_header() -> bytes:
    """A member whose zip headers claim 2 GiB: refused from the headers, nothing inflated."""
    data = bytearray(good())
    eocd = data.rfind(b"PK\x05\x06")
    (cd_offset,) = struct.unpack_from("<I", data, eocd + 16)
    struct.pack_into("<I", data, cd_offset + 24, 2**31)  # central directory: uncompressed size
    return bytes(data)


def not_a_zip() -> bytes:
    return b"x,y,label\n1,2,0\n"


# (id, bytes, fragment of the message)
BAD_FILES: list[tuple[str, Callable[[], bytes], str]] = [
    ("empty-file", lambda: b"", "empty file"),
    ("not-a-zip", not_a_zip, "not a readable .npz"),
    ("bare-npy", bare_npy, "bare .npy"),
    ("truncated-zip", truncated, "not a readable .npz"),
    ("bad-crc", bad_crc, "not a readable .npz"),
    ("pickled-object-array", pickled, "never loaded"),
    ("huge-declared-shape", huge_declared_shape, "declares [1000000000000]"),
    ("zip-header-declares-2GiB", lying_zip_header, "inflates to"),
    ("zero-d-input", lambda: npz(x=np.float32(1), labels=np.arange(4)), "does not fit"),
    ("zero-d-labels", lambda: npz(x=GOOD["x"], labels=np.int64(3)), "expected (n,)"),
    ("missing-input", lambda: npz(labels=np.arange(4)), "no array 'x'"),
    ("missing-labels", lambda: npz(x=GOOD["x"]), "no labels array"),
    ("wrong-shape", lambda: npz(x=np.ones((4, 5)), labels=np.arange(4)), "does not fit"),
    ("wrong-rank", lambda: npz(x=np.ones((4, 4, 1)), labels=np.arange(4)), "does not fit"),
    ("string-features", lambda: npz(x=np.full((4, 4), "a"), labels=np.arange(4)), "is <U1"),
    ("complex-features", lambda: npz(x=np.ones((4, 4), complex), labels=np.arange(4)), "complex"),
    ("nan-labels", lambda: npz(x=GOOD["x"], labels=np.array([0, 1, np.nan, 2])), "NaN"),
    ("string-labels", lambda: npz(x=GOOD["x"], labels=np.array(["a", "b", "c", "d"])), "<U1"),
    ("fractional-labels", lambda: npz(x=GOOD["x"], labels=np.full(4, 0.5)), "integer class"),
    (
        "uint64-labels-beyond-int64",
        lambda: npz(x=GOOD["x"], labels=np.array([0, 1, 2, 2**64 - 1], np.uint64)),
        "beyond int64",
    ),
    ("zero-rows", lambda: npz(x=np.ones((0, 4)), labels=np.arange(0)), "no samples"),
    ("one-row", lambda: npz(x=np.ones((1, 4)), labels=np.arange(1)), "at least 2"),
    ("mismatched-lengths", lambda: npz(x=GOOD["x"], labels=np.arange(3)), "disagree"),
    (
        "zero-d-expected",
        lambda: npz(x=GOOD["x"], labels=np.arange(4), expected_probs=np.float32(1)),
        "expected_probs",
    ),
]


@pytest.mark.parametrize(
    ("make", "fragment"), [(c[1], c[2]) for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_golden_bad_file_is_config_error(
    tmp_path: Path, make: Callable[[], bytes], fragment: str
) -> None:
    path = tmp_path / "golden.npz"
    path.write_bytes(make())
    for source in (path, path.read_bytes()):  # from a file (uri) and from bytes (ConfigMap)
        with pytest.raises(ConfigError) as info:
            load_golden(source, make_contract())
        assert fragment in str(info.value), str(info.value)
        assert str(info.value).startswith("golden set"), str(info.value)


def test_golden_table_is_large_enough() -> None:
    assert len(BAD_FILES) >= 20


def test_golden_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "g.npz"
    path.write_bytes(good())
    golden = load_golden(path, make_contract())
    assert golden.size == 4 and golden.labels is not None and list(golden.labels) == [0, 1, 2, 3]


def test_golden_bomb_refused_from_headers_without_allocating() -> None:
    """The 1.1 MB fixture inflates to 1.1 GiB; it is refused with < 16 MB allocated."""
    data = BOMB.read_bytes()
    assert len(data) < 2 * 1024 * 1024
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sum(i.file_size for i in zf.infolist()) > 1024**3  # it really is a bomb
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"inflates to .* > limit"):
            read_npz(BOMB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, peak
    assert MAX_GOLDEN_DECOMPRESSED_BYTES < 1024**3


def test_golden_lower_limit_refuses_real_inflation() -> None:
    """A member that really inflates past the limit is refused from its .npy header."""
    data = npz(x=np.zeros((4096, 256), np.float32), labels=np.zeros(4096, np.int64))
    with pytest.raises(ConfigError, match="inflates to"):
        read_npz(data, max_decompressed_bytes=1024 * 1024)


def test_golden_oversized_file_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.npz"
    with path.open("wb") as f:
        f.truncate(10 * 1024 * 1024)  # sparse: nothing is written or read
    with pytest.raises(ConfigError, match="bytes > limit 1048576"):
        read_golden_file(path, max_bytes=1024 * 1024)


def _refused_promptly(path: str) -> str:
    """Run the reader in a thread; a blocking read would keep it alive past the deadline."""
    outcome: list[BaseException | bytes] = []

    def target() -> None:
        try:
            outcome.append(read_golden_file(path))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), f"reading {path} blocked"
    (result,) = outcome
    assert isinstance(result, ConfigError), result
    return str(result)


def test_golden_dev_zero_refused() -> None:
    assert "not a regular file" in _refused_promptly("/dev/zero")


def test_golden_fifo_without_writer_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "golden.npz"
    os.mkfifo(fifo)
    assert "not a regular file" in _refused_promptly(str(fifo))


def test_golden_folder_and_missing_file_refused(tmp_path: Path) -> None:
    assert "not a regular file" in _refused_promptly(str(tmp_path))
    assert "no such file" in _refused_promptly(str(tmp_path / "nope.npz"))
