"""``analysis.slices``: the golden set's slice-id array is loaded beside the labels."""

from __future__ import annotations

import numpy as np
import pytest

from tensorgate.api.spec import GoldenSetSpec
from tensorgate.errors import ConfigError
from tensorgate.gate.golden import load_golden
from tests.unit.gate.conftest import make_contract


def _arrays(n: int = 6) -> dict[str, np.ndarray]:
    return {
        "x": np.zeros((n, 4), np.float32),
        "labels": np.zeros(n, np.int64),
        "country": np.array(["de", "fr", "de", "us", "fr", "de"][:n]),
        "device": np.array([1, 2, 1, 2, 1, 2][:n]),
    }


def test_slices_are_loaded_as_strings_and_cut_with_max_samples() -> None:
    spec = GoldenSetSpec.model_validate({"uri": "/g.npz", "maxSamples": 4})
    golden = load_golden(_arrays(), make_contract(), spec, slices="device")
    assert golden.slices is not None
    assert golden.slices.tolist() == ["1", "2", "1", "2"]
    assert load_golden(_arrays(), make_contract(), slices="country").slices is not None
    assert load_golden(_arrays(), make_contract()).slices is None


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        pytest.param(_arrays(), "names 'region', which is not a 1-D array", id="missing"),
        pytest.param(_arrays() | {"region": np.zeros((6, 2))}, "not a 1-D array", id="2-d"),
        pytest.param(_arrays() | {"region": np.array(["a"] * 5)}, "slices region", id="length"),
    ],
)
def test_bad_slice_arrays_are_named(arrays: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_golden(arrays, make_contract(), slices="region")


def test_unlabeled_production_inputs_are_loaded_by_prefix() -> None:
    arrays = _arrays() | {"prod_x": np.ones((9, 4), np.float64)}
    spec = GoldenSetSpec.model_validate({"uri": "/g.npz", "unlabeled": "prod_"})
    golden = load_golden(arrays, make_contract(), spec)
    assert golden.unlabeled is not None
    assert golden.unlabeled["x"].shape == (9, 4)
    assert golden.unlabeled["x"].dtype == np.float32


def test_missing_unlabeled_array_is_named() -> None:
    spec = GoldenSetSpec.model_validate({"uri": "/g.npz", "unlabeled": "prod_"})
    with pytest.raises(ConfigError, match="'prod_x'"):
        load_golden(_arrays(), make_contract(), spec)
