"""Why the operator never imports TensorFlow: its start-up time and memory, with and without.

Each variant starts a fresh interpreter 3 times and imports what the operator's reconcile
path imports (``tensorgate.app``, i.e. kopf, the Kubernetes edge, the gate over REST,
metrics, ledger); the second variant imports TensorFlow on top. Reported as ratios from one
run, since these machines are noisy. Writes benchmarks/results/footprint.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "footprint.json"
PROBE = "import resource, sys; {imports}; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
VARIANTS = {
    "operator": "import tensorgate.app",
    "operator+tensorflow": "import tensorgate.app; import tensorflow",
}


def measure(imports: str, runs: int = 3) -> dict[str, float]:
    times, rss = [], []
    for _ in range(runs):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(imports=imports)],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        times.append(time.perf_counter() - started)
        rss.append(int(out.stdout.strip().splitlines()[-1]) / 1024)
    return {"startup_s": statistics.median(times), "peak_rss_mib": statistics.median(rss)}


def main() -> None:
    results = {name: measure(imports) for name, imports in VARIANTS.items()}
    base, tf = results["operator"], results["operator+tensorflow"]
    results["ratios"] = {
        "startup_tf_over_operator": round(tf["startup_s"] / base["startup_s"], 2),
        "rss_tf_over_operator": round(tf["peak_rss_mib"] / base["peak_rss_mib"], 2),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
