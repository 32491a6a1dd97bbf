"""Why the operator never imports TensorFlow: its start-up time and memory, with and without.

Each variant starts a fresh interpreter 3 times and imports what the operator's reconcile
path imports (``tensorgate.app``, i.e. kopf, the Kubernetes edge, the gate over REST,
metrics, ledger); the second variant imports TensorFlow on top. Reported as ratios from one
run, since these machines are noisy. Writes benchmarks/results/footprint.json.

Also (issue 11, item 4):

- ``tensorgate run``: seconds from the process start until its liveness endpoint answers,
  and its RSS then (VmHWM from /proc), 3 times, against the cluster of ``KUBECONFIG`` (the
  test cluster, ``make cluster``); left out, with the reason, when none is reachable.
- the image's Python payload: the bytes of every installed file of ``tensorgate`` and its
  runtime requirements (no extras, as the Dockerfile installs), from the installed
  distributions' RECORDs; and what the ``tf`` extra would add. The base image
  (python:3.11-slim) comes on top.
"""

from __future__ import annotations

import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import httpx

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_startup(runs: int = 3, timeout_s: float = 60.0) -> dict[str, object]:
    """``tensorgate run`` until /healthz answers, and its peak RSS then (no objects)."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig or not Path(kubeconfig).is_file():
        return {"skipped": "no KUBECONFIG: start the test cluster (make cluster) and export it"}
    exe = Path(sys.executable).parent / "tensorgate"
    times, rss = [], []
    for _ in range(runs):
        port = _free_port()
        started = time.perf_counter()
        proc = subprocess.Popen(
            [
                str(exe),
                "run",
                "--namespace=tensorgate-footprint",
                "--log-level=WARNING",
                f"--liveness=http://127.0.0.1:{port}/healthz",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while time.perf_counter() - started < timeout_s:
                if proc.poll() is not None:
                    return {"skipped": f"tensorgate run exited {proc.returncode}"}
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            else:
                return {"skipped": f"not live within {timeout_s:.0f}s"}
            times.append(time.perf_counter() - started)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            rss.append(int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024)  # type: ignore[union-attr]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {
        "startup_to_liveness_s": statistics.median(times),
        "peak_rss_mib": statistics.median(rss),
    }


def _closure(name: str, extras: tuple[str, ...] = ()) -> set[str]:
    """``name`` and every distribution it requires at run time (with ``extras``)."""
    seen: set[str] = set()
    todo = [(name, extras)]
    while todo:
        dist_name, wanted = todo.pop()
        key = re.sub(r"[-_.]+", "-", dist_name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(key)
        for req in dist.requires or []:
            spec, _, marker = req.partition(";")
            if "extra" in marker and not any(f'"{e}"' in marker for e in wanted):
                continue
            req_name = re.split(r"[\s\[<>=!~;(]", spec.strip(), maxsplit=1)[0]
            if req_name:
                todo.append((req_name, ()))
    return seen


def _bytes(names: set[str]) -> int:
    total = 0
    for name in names:
        for file in metadata.distribution(name).files or []:
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
    return total


def image_estimate() -> dict[str, object]:
    base = _closure("tensorgate")
    with_tf = _closure("tensorgate", ("tf",))
    return {
        "distributions": len(base),
        "python_payload_mib": round(_bytes(base) / 2**20, 1),
        "tf_extra_adds_mib": round(_bytes(with_tf - base) / 2**20, 1),
        "note": "installed files of tensorgate and its runtime requirements (no extras); "
        "the python:3.11-slim base image comes on top",
    }


def main() -> None:
    results: dict[str, object] = {name: measure(imports) for name, imports in VARIANTS.items()}
    base, tf = results["operator"], results["operator+tensorflow"]
    assert isinstance(base, dict) and isinstance(tf, dict)
    results["tensorgate_run"] = run_startup()
    results["image"] = image_estimate()
    results["ratios"] = {
        "startup_tf_over_operator": round(tf["startup_s"] / base["startup_s"], 2),
        "rss_tf_over_operator": round(tf["peak_rss_mib"] / base["peak_rss_mib"], 2),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
