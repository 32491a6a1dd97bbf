"""Loading and validating golden sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tensorgate.api.spec import GoldenSetSpec
from tensorgate.errors import ConfigError
from tensorgate.gate.golden import load_golden
from tests.unit.gate.conftest import make_contract


def test_load_golden_casts_and_flattens_label_column(tmp_path: Path) -> None:
    path = tmp_path / "g.npz"
    np.savez(
        path,
        x=np.ones((5, 4), np.float64),
        labels=np.arange(5).reshape(5, 1),
        expected_probs=np.zeros((5, 3)),
    )
    golden = load_golden(path, make_contract())
    assert golden.inputs["x"].dtype == np.float32
    assert golden.labels is not None and golden.labels.shape == (5,)
    assert set(golden.expected) == {"probs"}
    assert golden.size == 5
    assert golden.head(7)["x"].shape == (7, 4)


def test_load_golden_respects_spec_names_and_max_samples() -> None:
    spec = GoldenSetSpec.model_validate(
        {"uri": "/g.npz", "features": "feats", "labels": "y", "maxSamples": 3}
    )
    golden = load_golden(
        {"feats": np.ones((5, 4), np.float32), "y": np.zeros(5, np.int64)}, make_contract(), spec
    )
    assert golden.size == 3


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        pytest.param({"other": np.ones((3, 4))}, "no array 'x'", id="missing-input"),
        pytest.param({"x": np.ones((3, 5)), "labels": np.zeros(3)}, "does not fit", id="wrong-width"),
        pytest.param({"x": np.ones((3, 4))}, "no labels array", id="missing-labels"),
        pytest.param({"x": np.ones((3, 4)), "labels": np.zeros(4)}, "disagree", id="length-mismatch"),
        pytest.param({"x": np.ones((3, 4)), "labels": np.full(3, 0.5)}, "integer class ids", id="fractional-labels"),
        pytest.param({"x": np.ones((3, 4)), "labels": np.zeros((3, 2))}, "expected (n,)", id="one-hot-labels"),
        pytest.param({"x": np.ones((0, 4)), "labels": np.zeros(0)}, "no samples", id="empty"),
    ],
)  # fmt: skip
def test_load_golden_rejects_bad_sets(arrays: dict[str, np.ndarray], fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_golden(arrays, make_contract())
    assert fragment in str(info.value)


def test_load_golden_rejects_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    with pytest.raises(ConfigError, match="not a readable"):
        load_golden(bad, make_contract())
