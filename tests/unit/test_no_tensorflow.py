"""The operator's reconcile path must not import TensorFlow: its image does not have it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("tensorflow", "tensorflow_serving", "keras")
PROBE = """
import json, sys
import {modules}
print(json.dumps(sorted({{m for m in sys.modules if m.split(".")[0] in {forbidden!r}}})))
"""


@pytest.mark.parametrize(
    "modules",
    [
        "tensorgate.handlers, tensorgate.app, tensorgate.cli",
        "tensorgate.kubectl_plugin",
    ],
    ids=["operator", "kubectl-plugin"],
)
def test_operator_modules_import_without_tensorflow(modules: str) -> None:
    code = PROBE.format(modules=modules, forbidden=FORBIDDEN)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    assert imported == [], f"importing {modules} pulled in {imported}"
