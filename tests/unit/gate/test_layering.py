"""The operator's reconcile path must never import TensorFlow or tensorflow_serving."""

from __future__ import annotations

import subprocess
import sys

LIGHT_MODULES = [
    "tensorgate.engine.stats",
    "tensorgate.serving.base",
    "tensorgate.serving.rest",
    "tensorgate.serving.fake",
    "tensorgate.gate.golden",
    "tensorgate.gate.smoke",
    "tensorgate.gate.canary",
    "tensorgate.gate.runner",
    "tensorgate.gate.report",
    "tensorgate.commands.gate",
    "tensorgate.commands.demo",
    "tensorgate.cli",
]


def test_gate_and_rest_client_do_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in LIGHT_MODULES)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'tensorflow', 'tensorflow_serving', 'keras', 'grpc'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""


def test_gate_does_not_import_serving_implementations() -> None:
    import ast
    from pathlib import Path

    import tensorgate.gate as gate

    allowed_edges = {"commands.py", "demo.py"}
    for path in Path(gate.__file__).parent.glob("*.py"):
        if path.name in allowed_edges:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module in {"tensorgate.serving.base"} or not node.module.startswith(
                    "tensorgate.serving"
                ), f"{path.name} imports {node.module}"
