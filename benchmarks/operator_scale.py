"""What the operator costs at 10, 100 and 1,000 ModelDeployments, on the real control plane.

The test cluster of tests/cluster (kube-apiserver with an audit log, kwok nodes) must be up
(``make bench-scale`` starts it with a Service range that holds 1,000 Services). The operator
runs as ``tensorgate run`` in a subprocess with the chart's ServiceAccount token (the chart's
RBAC rendered by the real Helm engine under a benchmark-only name), so

- every API request it makes is in the audit log under that ServiceAccount alone: counted by
  verb and resource, per second of a measuring window;
- its CPU time and peak RSS come from /proc/<pid> (utime+stime, VmHWM);
- its reconcile latency comes from its own ``tensorgate_reconcile_duration_seconds``
  histogram on its /metrics (the delta over a window, p50/p99 interpolated in the buckets).

Serving pods are made Ready by a tiny pod-status patcher in this process (admin identity, so
not counted): no serving backend runs (1,000 backends do not fit on 2 cores). It replaces the
status of ``stable``-track pods as the pod player does (``tests.cluster.player.set_ready``);
``canary`` pods are left unready.

For each N, in one namespace:

1. ``create``: N objects created at once; time until every one has a phase, and until every
   one is ``Promoted``.
2. ``idle``: every object ``Promoted``; a window of ``--window`` seconds with nothing changing.
3. ``idle_resync``: the operator restarted with a resync of ``--resync-probe`` seconds (20),
   so that the same window holds about three resyncs of every idle object: requests per
   resync decision, measured; at the real resync (``--interval``, default 600 s as in the
   chart) that is N x requests/resync / interval per second.
4. ``in_flight`` (on that operator): every object's spec moves to version 2; the canary's
   pods never become Ready, so each rollout waits in a polling phase (the engine's POLL_S),
   the most expensive waiting state. The window opens once all N are in it. (A rollout in
   ``Progressing`` would need smoke and the golden-set gate to pass against real backends:
   see the README.)

Ratios between N are the figures to read: the machine is shared, absolute numbers are noisy.
Writes benchmarks/results/scale.json with the sizes of this run only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from tests.cluster.player import connection_from_kubeconfig, set_ready
from tests.e2e.helm_fixtures import CHART, free_port, stop_process, token_kubeconfig

from tensorgate.api.spec import GROUP, PLURAL, VERSION
from tensorgate.platform.kubernetes.client import KubeClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
STATE_DIR = Path(os.environ.get("CLUSTER_STATE_DIR", ROOT / ".cluster"))  # as tests/cluster/env.sh
KUBECONFIG = Path(os.environ.get("KUBECONFIG_OUT", STATE_DIR / "kubeconfig"))
AUDIT_LOG = STATE_DIR / "audit.log"
VENV_BIN = Path(sys.executable).parent
BENCH_NS = "tensorgate-bench"  # the ServiceAccount's namespace: its requests are the operator's
NAME = "tensorgate-bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
POD_LABEL = "app.kubernetes.io/name=tfserving"
TRACK_LABEL = "tensorgate.dev/track"
# Extra kwok nodes, so 1,000 one-replica models fit (the cluster's own 4 nodes hold 440 pods).
BENCH_NODES = 4
PODS_PER_NODE = 400


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    out = subprocess.run(
        [str(_cluster_bin("kubectl")), f"--kubeconfig={KUBECONFIG}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def _cluster_bin(name: str) -> Path:
    env = ROOT / "tests" / "cluster" / "env.sh"
    out = subprocess.run(
        ["bash", "-c", f'source "{env}" && echo "$CLUSTER_BIN"'],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return Path(out.stdout.strip()) / name


# -- the operator's identity and the cluster's extra nodes ---------------------------------


def operator_rbac() -> list[dict[str, Any]]:
    """The chart's ServiceAccount, ClusterRole and binding (real Helm engine), renamed so the
    benchmark never re-points the e2e tests' binding."""
    import helm_python

    rendered = helm_python.Chart.load(str(CHART)).render(
        {}, name=NAME, namespace=BENCH_NS, is_install=True
    )
    docs: list[dict[str, Any]] = []
    for path, text in rendered.items():
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            kind = (doc or {}).get("kind")
            if kind in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} and not doc[
                "metadata"
            ]["name"].endswith(("-edit", "-view")):
                docs.append(doc)
    return docs


def operator_identity(workdir: Path) -> tuple[Path, str]:
    """(a kubeconfig with the ServiceAccount's token, the audit log's user name)."""
    docs = operator_rbac()
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    kubectl("create", "namespace", BENCH_NS, check=False)
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    name = sa["metadata"]["name"]
    token = kubectl("create", "token", name, "-n", BENCH_NS, "--duration=2h").strip()
    path = token_kubeconfig(KUBECONFIG, token, workdir / "operator.kubeconfig")
    return path, f"system:serviceaccount:{BENCH_NS}:{name}"


def bench_nodes() -> str:
    nodes = []
    for i in range(BENCH_NODES):
        name = f"bench-cpu-{i}"
        capacity = {"cpu": "1000", "memory": "4000Gi", "pods": str(PODS_PER_NODE)}
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        "tensorgate.dev/accelerator": "cpu",
                    },
                },
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": f"127.0.9.{i + 1}"},
                        {"type": "Hostname", "address": name},
                    ],
                    "capacity": capacity,
                    "allocatable": capacity,
                },
            }
        )
    return yaml.safe_dump_all(nodes)


def model(name: str, namespace: str, version: str) -> dict[str, Any]:
    """A CPU model with one replica; long steps, so a rollout that got that far would wait."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": "mnist", "version": version, "uri": "/models/mnist"},
            "serving": {"replicas": 1, "gpu": {"count": 0}},
            "contract": {
                "inputs": {"pixels": {"dtype": "float32", "shape": [-1, 784]}},
                "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 10]}},
            },
            "analysis": {"steps": [50, 100], "interval": "30m"},
        },
    }


# -- measuring ------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def proc_mem_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            out[key] = int(value.split()[0])
    return out


def scrape_histogram(url: str) -> dict[float, float]:
    """Cumulative bucket counts of tensorgate_reconcile_duration_seconds."""
    buckets: dict[float, float] = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith("tensorgate_reconcile_duration_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The q-quantile of the observations between two scrapes (linear within a bucket)."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for edge, cum in zip(edges, counts, strict=True):
        if cum >= rank:
            if edge == float("inf"):
                return lower
            inside = cum - below
            return lower + (edge - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = edge, cum
    return lower


def audit_files(offset: int, inode: int, since: datetime) -> list[tuple[Path, int]]:
    """The audit log from ``offset`` on; if the API server rotated it since (another inode),
    the rotated files written since ``since`` and the whole new log."""
    current = AUDIT_LOG.resolve()
    if current.stat().st_ino == inode and current.stat().st_size >= offset:
        return [(current, offset)]
    rotated = [
        p
        for p in current.parent.glob(current.stem + "-*" + current.suffix)
        if p.stat().st_mtime >= since.timestamp() - 1
    ]
    return [(p, 0) for p in sorted(rotated)] + [(current, 0)]


def audit_since(
    files: list[tuple[Path, int]], user: str, since: datetime, until: datetime
) -> Counter[str]:
    """The operator's requests in [since, until) by "verb resource" (one per auditID)."""
    seen: dict[str, str] = {}
    for path, offset in files:
        _read_audit(path, offset, user, since, until, seen)
    return Counter(seen.values())


def _read_audit(
    path: Path, offset: int, user: str, since: datetime, until: datetime, seen: dict[str, str]
) -> None:
    with path.open(encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        for line in log:
            if user not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event["user"].get("username") != user:
                continue
            at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if not since <= at < until:
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource") or event.get("requestURI", "?")
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            seen[event["auditID"]] = f"{event['verb']} {resource}"


class Window:
    """Requests, CPU and reconcile latency of the operator between ``start`` and ``stop``."""

    def __init__(self, pid: int, user: str, metrics_url: str) -> None:
        self.pid, self.user, self.metrics_url = pid, user, metrics_url

    def start(self) -> None:
        self.offset = AUDIT_LOG.resolve().stat().st_size
        self.inode = AUDIT_LOG.resolve().stat().st_ino
        self.since = datetime.now(UTC)
        self.t0, self.cpu0 = time.monotonic(), proc_cpu_s(self.pid)
        self.hist0 = scrape_histogram(self.metrics_url)

    def stop(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.t0
        cpu = proc_cpu_s(self.pid) - self.cpu0
        hist = scrape_histogram(self.metrics_url)
        until = datetime.now(UTC)
        time.sleep(2)  # the audit backend writes an event shortly after the response
        files = audit_files(self.offset, self.inode, self.since)
        calls = audit_since(files, self.user, self.since, until)
        decisions = hist.get(float("inf"), 0.0) - self.hist0.get(float("inf"), 0.0)
        total = sum(calls.values())
        p50, p99 = (quantile(self.hist0, hist, q) for q in (0.5, 0.99))
        return {
            "seconds": round(elapsed, 1),
            "requests": total,
            "requests_per_s": round(total / elapsed, 2),
            "by_verb_resource_per_s": {
                k: round(v / elapsed, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
            },
            "decisions": int(decisions),
            "requests_per_decision": round(total / decisions, 2) if decisions else None,
            "cpu_percent": round(100 * cpu / elapsed, 1),
            "reconcile_p50_s": None if p50 is None else round(p50, 4),
            "reconcile_p99_s": None if p99 is None else round(p99, 4),
            **{k: v for k, v in proc_mem_kib(self.pid).items()},
        }


# -- the pod-status patcher -------------------------------------------------------------------


def _needs_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return (
        (pod["metadata"].get("labels") or {}).get(TRACK_LABEL) == "stable"
        and status.get("phase") == "Running"
        and bool(status.get("podIP"))
        and not pod["metadata"].get("deletionTimestamp")
        and not any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    )


async def ready_patcher(client: KubeClient, namespace: str, stop: asyncio.Event) -> None:
    """Make every Running ``stable`` serving pod Ready (as the pod player does, without a
    backend); canary pods stay unready. Watch-driven, so the benchmark itself adds little load
    to the API server: a list, then a watch from its resourceVersion (relist on any error)."""
    path = f"/api/v1/namespaces/{namespace}/pods"
    sem = asyncio.Semaphore(16)
    pending: set[asyncio.Task[None]] = set()

    async def ready(pod: dict[str, Any]) -> None:
        async with sem:
            meta = pod["metadata"]
            with contextlib.suppress(Exception):  # a lost race: the next event retries
                await client.request(
                    "PUT", f"{path}/{meta['name']}/status", body=set_ready(pod, True)
                )

    def handle(pod: dict[str, Any]) -> None:
        if _needs_ready(pod):
            task = asyncio.create_task(ready(pod))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def follow() -> None:
        while True:
            with contextlib.suppress(Exception):
                listing = await client.request("GET", path, params={"labelSelector": POD_LABEL})
                for pod in (listing or {}).get("items") or []:
                    handle(pod)
                version = str(((listing or {}).get("metadata") or {}).get("resourceVersion"))
                while True:
                    async for event in client.watch(
                        path, label_selector=POD_LABEL, resource_version=version, timeout_s=60
                    ):
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            raise RuntimeError("watch expired")
                        version = str(obj["metadata"].get("resourceVersion") or version)
                        if event.get("type") in {"ADDED", "MODIFIED"}:
                            handle(obj)
            await asyncio.sleep(1.0)

    follower = asyncio.create_task(follow())
    await stop.wait()
    follower.cancel()
    await asyncio.gather(follower, *pending, return_exceptions=True)


# -- one size --------------------------------------------------------------------------------


@contextlib.contextmanager
def operator(
    kubeconfig: Path, namespace: str, log_path: Path, interval_s: float
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port, live = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = str(kubeconfig)
    args = [
        str(VENV_BIN / "tensorgate"),
        "run",
        f"--namespace={namespace}",
        f"--metrics-port={port}",
        f"--liveness=http://127.0.0.1:{live}/healthz",
        f"--interval={interval_s}",
        "--log-level=WARNING",
    ]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"operator exited {proc.returncode}; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{live}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"operator not live after 90s; see {log_path}")
            time.sleep(0.2)
        yield proc, f"http://127.0.0.1:{port}/metrics"
    finally:
        stop_process(proc)


async def phases(client: KubeClient, namespace: str) -> Counter[str]:
    items = await client.list(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}")
    return Counter(str((i.get("status") or {}).get("phase") or "") for i in items)


async def wait_phases(
    client: KubeClient, namespace: str, n: int, done: set[str] | None, timeout_s: float
) -> tuple[float | None, Counter[str]]:
    """Seconds until all n objects have a phase (``done`` None) or one in ``done``."""
    start = time.monotonic()
    seen: Counter[str] = Counter()
    while time.monotonic() - start < timeout_s:
        seen = await phases(client, namespace)
        ok = sum(c for p, c in seen.items() if (p and done is None) or (done and p in done))
        if ok >= n:
            return round(time.monotonic() - start, 1), seen
        await asyncio.sleep(0.5)
    return None, seen


async def create_namespace(admin: KubeClient, namespace: str) -> None:
    """Create ``namespace`` and wait (at most 60 s) for its default ServiceAccount."""
    await admin.request(
        "POST",
        "/api/v1/namespaces",
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
    )
    for _ in range(120):
        if await admin.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default"):
            break
        await asyncio.sleep(0.5)


async def one_size(n: int, args: argparse.Namespace, identity: tuple[Path, str]) -> dict[str, Any]:
    kubeconfig, user = identity
    namespace = f"bench-scale-{n}-{int(time.time()) % 100000}"
    admin = KubeClient(connection_from_kubeconfig(KUBECONFIG), timeout_s=30, retries=5)
    await create_namespace(admin, namespace)
    stop = asyncio.Event()
    patcher = asyncio.create_task(ready_patcher(admin, namespace, stop))
    log_path = Path(args.workdir) / f"operator-{n}.log"
    result: dict[str, Any] = {"n": n, "namespace": namespace}
    began = time.monotonic()
    try:
        with operator(kubeconfig, namespace, log_path, args.interval) as (proc, metrics):
            window = Window(proc.pid, user, metrics)
            rss_before = proc_mem_kib(proc.pid)["VmRSS"]
            sem = asyncio.Semaphore(20)
            result["rss_before_kib"] = rss_before
            base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"

            async def create(i: int) -> None:
                async with sem:
                    await admin.request("POST", base, body=model(f"m{i:04d}", namespace, "1"))

            window.start()
            t0 = time.monotonic()
            await asyncio.gather(*(create(i) for i in range(n)))
            result["create_s"] = round(time.monotonic() - t0, 1)
            has_phase, _ = await wait_phases(admin, namespace, n, None, args.timeout)
            result["all_have_phase_s"] = (
                None if has_phase is None else round(has_phase + result["create_s"], 1)
            )
            promoted, seen = await wait_phases(admin, namespace, n, {"Promoted"}, args.timeout)
            result["all_promoted_s"] = (
                None
                if promoted is None
                else round((has_phase or 0) + promoted + result["create_s"], 1)
            )
            result["phases_after_create"] = dict(seen)
            result["create"] = window.stop()
            await asyncio.sleep(args.settle)

            window.start()
            await asyncio.sleep(args.window)
            idle = window.stop()
            result["idle"] = idle
            idle["phases"] = dict(await phases(admin, namespace))
            result["rss_idle_kib"] = proc_mem_kib(proc.pid)["VmRSS"]
            peak = proc_mem_kib(proc.pid)["VmHWM"]

        # The resync, measured: the same objects under an operator whose resync is
        # ``--resync-probe`` s, so that a window holds about window/probe resyncs per object.
        probe_log = Path(args.workdir) / f"operator-{n}-resync.log"
        with operator(kubeconfig, namespace, probe_log, args.resync_probe) as (proc, metrics):
            window = Window(proc.pid, user, metrics)
            await asyncio.sleep(args.resync_probe + args.settle)  # start-up decisions done
            window.start()
            await asyncio.sleep(args.window)
            resync = window.stop()
            resync["resync_interval_s"] = args.resync_probe
            resync["phases"] = dict(await phases(admin, namespace))
            result["idle_resync"] = resync
            # What a resync costs at the real interval: N objects x requests per resync
            # decision / interval (every decision in this window is a resync: nothing changed).
            per_resync = resync["requests_per_decision"] or 0.0
            idle["resync_requests_per_s"] = round(n * per_resync / args.interval, 3)

            async def bump(i: int) -> None:
                async with sem:
                    await admin.patch(f"{base}/m{i:04d}", {"spec": {"model": {"version": "2"}}})

            t0 = time.monotonic()
            await asyncio.gather(*(bump(i) for i in range(n)))
            # The window opens once every rollout is waiting for its canary's pods (and the
            # operator has written what entering that phase writes), not while it catches up.
            waiting, _ = await wait_phases(admin, namespace, n, {"Deploying"}, args.timeout)
            result["all_in_flight_s"] = None if waiting is None else round(time.monotonic() - t0, 1)
            await asyncio.sleep(args.settle)
            window.start()
            await asyncio.sleep(args.window)
            flight = window.stop()
            flight["phases"] = dict(await phases(admin, namespace))
            result["in_flight"] = flight
            peak = max(peak, proc_mem_kib(proc.pid)["VmHWM"])
        result["peak_rss_kib"] = peak
        # From the operator's own start (no object yet) to its peak with N objects.
        result["rss_growth_kib_per_object"] = round((peak - rss_before) / n, 1)
    finally:
        stop.set()
        await patcher
        with contextlib.suppress(Exception):
            await admin.delete(f"/api/v1/namespaces/{namespace}")
        await admin.aclose()
    result["run_s"] = round(time.monotonic() - began, 1)
    return result


def summary(runs: dict[str, Any]) -> dict[str, Any]:
    """Growth with N (slopes between the smallest and the largest size measured) and the
    targets of issue 11."""
    sizes = sorted(int(n) for n in runs)
    out: dict[str, Any] = {"sizes": sizes}
    if len(sizes) >= 2:
        small, large = runs[str(sizes[0])], runs[str(sizes[-1])]
        span = sizes[-1] - sizes[0]
        out["rss_growth_kib_per_object"] = round(
            (large["peak_rss_kib"] - small["peak_rss_kib"]) / span, 1
        )
        for state in ("idle", "in_flight"):
            out[f"{state}_requests_per_s_per_object"] = {
                str(n): round(runs[str(n)][state]["requests_per_s"] / n, 3) for n in sizes
            }
    largest = runs[str(sizes[-1])]
    idle_total = largest["idle"]["requests_per_s"] + largest["idle"]["resync_requests_per_s"]
    out["targets"] = {
        "idle_requests_per_s_at_largest": {"value": round(idle_total, 2), "target": 2.0},
        "rss_growth_kib_per_object": {
            "value": out.get("rss_growth_kib_per_object"),
            "target": 100,
        },
        "all_have_a_phase_s_at_largest": {
            "value": largest["all_have_phase_s"],
            "target": 120,
        },
    }
    return out


def provenance() -> dict[str, str]:
    """When and at which commit a result was measured."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    return {"measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": commit}


def main() -> None:
    if os.environ.get("TENSORGATE_BENCH_SCALE") != "1":
        # `make bench` runs every benchmarks/*.py; this one needs its own cluster and ~23 min.
        print(
            "operator_scale.py: skipped (run `make bench-scale`, which sets TENSORGATE_BENCH_SCALE=1)"
        )
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated N")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per window")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before a window")
    parser.add_argument("--interval", type=float, default=600.0, help="operator resync (s)")
    parser.add_argument(
        "--resync-probe", type=float, default=20.0, help="resync (s) of the run that measures one"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="longest wait for phases")
    parser.add_argument("--workdir", default=str(STATE_DIR / "bench-scale"))
    args = parser.parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    kubectl("apply", "-f", "-", stdin=bench_nodes())
    identity = operator_identity(Path(args.workdir))
    # One run, every size side by side (ratios between N are the figures): no merging with
    # sizes measured at another commit.
    results: dict[str, Any] = {"runs": {}}
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "note": "2 cores shared with other engineers' jobs: read ratios between N, not absolutes",
        "pod_readiness": "pod-status patcher in the benchmark (no serving backend)",
        "window_s": args.window,
        "resync_interval_s": args.interval,
    }
    for n in (int(s) for s in args.sizes.split(",")):
        started = time.monotonic()
        out = asyncio.run(one_size(n, args, identity))
        out.update(provenance())
        results["runs"][str(n)] = out
        print(json.dumps(out, indent=2), flush=True)
        print(f"N={n}: {time.monotonic() - started:.0f}s", flush=True)
        results["summary"] = summary(results["runs"])
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    main()
