"""The largest golden set the operator accepts fits the chart's memory limit.

``gate/golden.py`` accepts a golden set whose arrays inflate to at most
``MAX_GOLDEN_DECOMPRESSED_BYTES`` (128 MiB); the chart gives the operator 512 Mi. A child
process imports what ``tensorgate run`` imports, reads such a file (compressed: a ConfigMap
or a bucket object is small) through ``load_golden`` as the operator's gate does, and reports
its own peak RSS (``VmHWM``): it must leave room below 512 MiB for the gate's requests (at
most 2 x 6 MiB in flight per server) and the informers' objects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from tensorgate.gate.golden import MAX_GOLDEN_DECOMPRESSED_BYTES

CHART_VALUES = Path(__file__).parents[2] / "charts" / "tensorgate" / "values.yaml"
HEADROOM_MIB = 64  # the gate's requests in flight, the informers' objects, allocator slack

CHILD = """
import json, sys
import tensorgate.app, tensorgate.checks  # what `tensorgate run` imports
from tensorgate.api.spec import ContractSpec
from tensorgate.gate.golden import load_golden

contract = ContractSpec.model_validate(
    {"inputs": {"x": {"dtype": "float32", "shape": [-1, %d]}},
     "outputs": {"p": {"dtype": "float32", "shape": [-1, 10], "kind": "probabilities"}}}
)
data = open(sys.argv[1], "rb").read()
golden = load_golden(data, contract)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"rows": len(golden.labels), "peak_kib": hwm}))
"""


def _chart_limit_mib() -> int:
    values = yaml.safe_load(CHART_VALUES.read_text())
    limit = str(values["resources"]["limits"]["memory"])
    assert limit.endswith("Mi"), limit
    return int(limit.removesuffix("Mi"))


def test_the_largest_accepted_golden_set_fits_the_chart_memory_limit(tmp_path: Path) -> None:
    width = 1024
    rows = (MAX_GOLDEN_DECOMPRESSED_BYTES - 4096) // (width * 4 + 8)  # inputs + int64 labels
    path = tmp_path / "largest.npz"
    rng = np.random.default_rng(0)
    x = np.zeros((rows, width), dtype=np.float32)
    x[:, 0] = rng.random(rows, dtype=np.float32)  # compressible, but not a constant
    np.savez_compressed(path, x=x, labels=rng.integers(0, 10, rows))
    del x
    out = subprocess.run(
        [sys.executable, "-c", CHILD % width, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == rows
    peak_mib = result["peak_kib"] / 1024
    limit_mib = _chart_limit_mib()
    print(
        f"\nlargest golden set ({path.stat().st_size / 2**20:.1f} MiB file): peak {peak_mib:.0f} MiB"
    )
    assert peak_mib < limit_mib - HEADROOM_MIB, (peak_mib, limit_mib)
