"""Shared integration fixtures: a model base path with real SavedModels and a golden set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.models import DIGITS, build_family

# Versions under one base path: 1 good (stable), 2 identical (good candidate),
# 4 chance-level weights (the silent failure: well-formed answers, accuracy collapses).
GOOD, CANDIDATE, BROKEN = "1", "2", "4"


@dataclass(frozen=True)
class ModelRepo:
    base: Path
    golden: Path

    def manifest(self, version: str, name: str = "digits", **analysis: Any) -> dict[str, Any]:
        return {
            "apiVersion": "tensorgate.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {"name": DIGITS.name, "version": version, "uri": str(self.base)},
                "serving": {"replicas": 1, "gpu": {"count": 0}},
                "contract": DIGITS.contract(),
                "goldenSet": {"uri": str(self.golden)},
                "analysis": {"steps": [50, 100], "interval": "2s", **analysis},
            },
        }


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> ModelRepo:
    root = tmp_path_factory.mktemp("repo")
    x, y = DIGITS.samples(600, seed=3)
    build_family(root / DIGITS.name, DIGITS, x, ["good", "identical", "collapse"])
    golden = root / "golden.npz"
    np.savez(golden, **{DIGITS.input_name: x, "labels": y})
    return ModelRepo(root / DIGITS.name, golden)
