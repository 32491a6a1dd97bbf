"""``golden_rows``: the gate's row count from the labels' ``.npy`` header alone."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from numpy.lib import format as npy_format

from tensorgate.api.spec import GoldenSetSpec
from tensorgate.errors import ConfigError
from tensorgate.gate.golden import golden_rows


def _spec(**fields: object) -> GoldenSetSpec:
    return GoldenSetSpec.model_validate({"uri": "/g.npz", **fields})


def _npz(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    return out.getvalue()


def test_golden_rows_counts_the_labels() -> None:
    data = _npz(x=np.zeros((300, 2), np.float32), labels=np.zeros(300, np.int64))
    assert golden_rows(data, _spec()) == 300


def test_golden_rows_applies_max_samples() -> None:
    data = _npz(x=np.zeros((300, 2), np.float32), y=np.zeros(300, np.int64))
    assert golden_rows(data, _spec(labels="y", maxSamples=120)) == 120


def test_golden_rows_reads_only_the_header() -> None:
    """A labels member whose header declares 10**9 rows but holds no data: counted, not read."""
    header = io.BytesIO()
    npy_format.write_array_header_1_0(
        header, {"descr": "<i8", "fortran_order": False, "shape": (10**9,)}
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("labels.npy", header.getvalue())
    assert golden_rows(out.getvalue(), _spec()) == 10**9


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"not a zip", id="not-a-zip"),
        pytest.param(_npz(x=np.zeros((3, 2), np.float32)), id="no-labels"),
    ],
)
def test_golden_rows_unreadable_is_a_config_error(data: bytes) -> None:
    with pytest.raises(ConfigError, match=r"labels\.npy"):
        golden_rows(data, _spec())
