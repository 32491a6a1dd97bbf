"""The chart installed with a real ``helm`` into the real test cluster, driven with kubectl.

Install, check the chart's objects, run the operator with the chart's ServiceAccount token and
the chart Deployment's own arguments (standing in for its pod: kwok fakes containers), roll a
model out and drive it with ``kubectl tensorgate`` (status, promote, abort), upgrade the release
with new values, then delete the model and uninstall. The tests of this module run in order
and share one release; test_rbac_audit.py later checks what the operator did against the
chart's RBAC in the API server's audit log.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tensorgate.api.spec import API_VERSION, GROUP, KIND, PLURAL
from tensorgate.reconcile import COMMAND_ANNOTATION
from tests.e2e.helm_fixtures import (
    CHART,
    RELEASE,
    RELEASE_NAMESPACE,
    RELEASE_SELECTOR,
    SERVICE_ACCOUNT,
    VENV_BIN,
    helm_binary,
    operator_process,
    run,
    token_kubeconfig,
    write_values,
)
from tests.helpers import wait_sync

if TYPE_CHECKING:
    import subprocess

    from tests.cluster.player import PodPlayer
    from tests.e2e.conftest import Cluster

pytestmark = pytest.mark.cluster

MODEL_NAMESPACE = "tg-helm-e2e"
MODEL = "digits"
# The model the session's pod player serves (tests/e2e/conftest.py: MNIST_URIS); on another
# cluster, a URI its TF Serving image can load (README: "End-to-end tests on kind or k3d").
MODEL_URI = os.environ.get("TENSORGATE_E2E_MODEL_URI", "/models/mnist")
SERVING_IMAGE = os.environ.get("TENSORGATE_E2E_SERVING_IMAGE")  # default: the CRD's
PHASE_TIMEOUT_S = 90.0
# Where a rollout is in flight. On tests/cluster's cluster it stays in SmokeTesting: pod IPs
# are loopback addresses, which EndpointSlices refuse, so smoke inference finds no endpoints.
IN_FLIGHT = ("Deploying", "SmokeTesting", "Evaluating", "Progressing")


def model_manifest(version: str) -> dict[str, Any]:
    """A CPU model (gpu.count 0) with the contract of examples/mnist-gpu.yaml. Steps are long,
    so a rollout stays in flight at its first step until someone promotes or aborts it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": MODEL, "namespace": MODEL_NAMESPACE},
        "spec": {
            "model": {"name": "mnist", "version": version, "uri": MODEL_URI},
            "serving": {
                "replicas": 1,
                "gpu": {"count": 0},
                **({"image": SERVING_IMAGE} if SERVING_IMAGE else {}),
            },
            "contract": {
                "inputs": {"pixels": {"dtype": "float32", "shape": [-1, 784]}},
                "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 10]}},
            },
            "analysis": {"steps": [50, 100], "interval": "10m"},
        },
    }


@dataclass
class Release:
    """The installed release and the operator process standing in for its pod."""

    cluster: Cluster
    helm: str
    workdir: Path
    values: Path
    operator: subprocess.Popen[bytes] | None = None
    log_offset: int = 0  # where the running operator's lines start in operator.log
    stack: list[Any] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def admin_env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.cluster.kubeconfig)}

    def helm_cmd(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        out = run([self.helm, *args], env=self.admin_env, timeout_s=timeout_s)
        self.timings[f"helm {args[0]}"] = time.monotonic() - start
        return out

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, stdin=stdin, check=check)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def model(self) -> dict[str, Any]:
        out = self.kubectl("get", f"{PLURAL}.{GROUP}", MODEL, "-n", MODEL_NAMESPACE, "-o", "json")
        md: dict[str, Any] = json.loads(out.stdout)
        return md

    def plugin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``kubectl tensorgate ...``: kubectl finds the console script on PATH."""
        kubectl_dir = str(Path(self.cluster.kubectl_bin).parent)
        env = {
            **self.admin_env,
            "PATH": os.pathsep.join([str(VENV_BIN), kubectl_dir, os.environ.get("PATH", "")]),
            "COLUMNS": "200",
        }
        return run(
            [self.cluster.kubectl_bin, "tensorgate", *args, "-n", MODEL_NAMESPACE],
            env=env,
            check=check,
        )

    def start_operator(self) -> None:
        """The operator with the live Deployment's args and a fresh ServiceAccount token.

        On a cluster with real kubelets the chart's pod is the operator: wait for it instead."""
        self.stop_operator()
        if not self.cluster.is_kwok:
            self.kubectl(
                "rollout", "status", f"deployment/{RELEASE}", "-n", RELEASE_NAMESPACE,
                "--timeout=120s",
            )  # fmt: skip
            return
        deployment = self.get_json("deployment", RELEASE, "-n", RELEASE_NAMESPACE)
        token = self.kubectl(
            "create", "token", SERVICE_ACCOUNT, "-n", RELEASE_NAMESPACE, "--duration=1h"
        ).stdout.strip()
        kubeconfig = token_kubeconfig(
            self.cluster.kubeconfig, token, self.workdir / "operator.kubeconfig"
        )
        log = self.workdir / "operator.log"
        self.log_offset = log.stat().st_size if log.exists() else 0
        ctx = operator_process(deployment, kubeconfig, log)
        self.operator = ctx.__enter__()
        self.stack.append(ctx)

    def stop_operator(self) -> None:
        while self.stack:
            self.stack.pop().__exit__(None, None, None)
        self.operator = None

    def tracks(self) -> list[str]:
        selector = f"tensorgate.dev/model={MODEL}"
        items = self.get_json("deployment", "-l", selector, "-n", MODEL_NAMESPACE)["items"]
        return sorted(d["metadata"]["labels"]["tensorgate.dev/track"] for d in items)

    def wait_status(self, **want: Any) -> dict[str, Any]:
        """Poll the ModelDeployment until its status has every ``want`` field (a tuple: any
        of its values)."""

        def matches(value: Any, wanted: Any) -> bool:
            return value in wanted if isinstance(wanted, tuple) else bool(value == wanted)

        def probe() -> dict[str, Any] | None:
            self.check_operator()
            md = self.model()
            st = md.get("status") or {}
            return md if all(matches(st.get(k), v) for k, v in want.items()) else None

        try:
            md: dict[str, Any] = wait_sync(
                probe, timeout_s=PHASE_TIMEOUT_S, every_s=0.5, what=f"status {want}"
            )
        except AssertionError as exc:
            seen = (self.model().get("status") or {}).get("message")
            raise AssertionError(f"{exc}; status message: {seen}\n{self.operator_log()}") from exc
        return md

    def wait_command_consumed(self) -> dict[str, Any]:
        """The object once status.lastCommand acknowledges the command annotation's id (the
        annotation stays: nothing erases a newer command)."""

        def probe() -> dict[str, Any] | None:
            self.check_operator()
            md = self.model()
            annotations = md["metadata"].get("annotations") or {}
            wanted = annotations.get(f"{COMMAND_ANNOTATION}-id")
            last = (md.get("status") or {}).get("lastCommand") or {}
            return md if wanted and last.get("id") == wanted else None

        md: dict[str, Any] = wait_sync(
            probe, timeout_s=30, every_s=0.3, what=f"{COMMAND_ANNOTATION} acknowledged"
        )
        return md

    def check_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is not None:
            raise AssertionError(
                f"operator exited {self.operator.returncode}\n{self.operator_log()}"
            )

    def operator_log(self, limit: int = 4000) -> str:
        """What the running (or last) operator wrote, the last ``limit`` characters."""
        path = self.workdir / "operator.log"
        if not path.exists():
            return ""
        with path.open("rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")[-limit:]


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    helm = helm_binary()
    workdir = tmp_path_factory.mktemp("helm-e2e")
    rel = Release(cluster, helm, workdir, write_values(workdir / "values.yaml"))
    try:
        yield rel
    finally:
        rel.stop_operator()
        # Leave nothing behind even when a test failed half-way.
        ns = ["-n", MODEL_NAMESPACE]
        rel.kubectl(
            "patch", f"{PLURAL}.{GROUP}", MODEL, *ns, "--type=merge",
            "-p", '{"metadata":{"finalizers":null}}', check=False,
        )  # fmt: skip
        rel.kubectl("delete", "namespace", MODEL_NAMESPACE, "--ignore-not-found", "--wait=false")
        run([helm, "uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--ignore-not-found"],
            env=rel.admin_env, check=False)  # fmt: skip
        for what, seconds in rel.timings.items():
            print(f"helm e2e timing: {what}: {seconds:.1f}s")


def test_helm_install_creates_chart_objects(release: Release) -> None:
    release.helm_cmd(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "-f",
        str(release.values),
    )  # fmt: skip  (Helm 4: without --wait it does not wait for readiness, like Helm 3's --wait=false)

    status = json.loads(
        release.helm_cmd("status", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json").stdout
    )
    assert (status["info"]["status"], status["version"]) == ("deployed", 1)
    release.kubectl("wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=30s")
    ns = ["-n", RELEASE_NAMESPACE]
    names = {
        "serviceaccount": release.get_json("serviceaccount", "-l", RELEASE_SELECTOR, *ns),
        "deployment": release.get_json("deployment", "-l", RELEASE_SELECTOR, *ns),
        "service": release.get_json("service", "-l", RELEASE_SELECTOR, *ns),
        "clusterrole": release.get_json("clusterrole", "-l", RELEASE_SELECTOR),
        "clusterrolebinding": release.get_json("clusterrolebinding", "-l", RELEASE_SELECTOR),
    }
    found = {k: sorted(i["metadata"]["name"] for i in v["items"]) for k, v in names.items()}
    assert found == {
        "serviceaccount": [SERVICE_ACCOUNT],
        "deployment": [RELEASE],
        "service": [f"{RELEASE}-metrics"],
        "clusterrole": [RELEASE, f"{RELEASE}-edit", f"{RELEASE}-view"],
        "clusterrolebinding": [RELEASE],
    }
    binding = names["clusterrolebinding"]["items"][0]
    assert binding["roleRef"]["name"] == RELEASE
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": RELEASE_NAMESPACE}
    ]
    rules = names["clusterrole"]["items"]
    operator_role = next(r for r in rules if r["metadata"]["name"] == RELEASE)
    for rule in operator_role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
    metrics = names["service"]["items"][0]["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in metrics] == [("metrics", 9090)]
    # The operator's pod is faked by kwok (it cannot run the image), but it is scheduled.
    release.kubectl("rollout", "status", f"deployment/{RELEASE}", *ns, "--timeout=60s")


def test_helm_operator_rolls_out_and_obeys_kubectl_plugin(
    release: Release, player: PodPlayer | None
) -> None:
    release.kubectl("create", "namespace", MODEL_NAMESPACE)
    wait_sync(
        lambda: (
            release.kubectl("get", "sa", "default", "-n", MODEL_NAMESPACE, check=False).returncode
            == 0
        ),
        timeout_s=60,
        what="the default ServiceAccount",
    )
    release.start_operator()
    release.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(model_manifest("1")))

    # First version: straight to stable once its pod is Ready (the pod player serves it).
    md = release.wait_status(phase="Promoted", stableVersion="1")
    # No finalizer: the garbage collector removes the children, the operator needs none.
    assert f"{GROUP}/finalizer" not in (md["metadata"].get("finalizers") or [])
    ns = ["-n", MODEL_NAMESPACE]
    assert release.tracks() == ["stable"]
    assert release.get_json("service", "-l", f"tensorgate.dev/model={MODEL}", *ns)["items"]

    shown = release.plugin("status", MODEL).stdout
    for text in ("phase", "Promoted", "stable version", "Conditions", "Recent events"):
        assert text in shown, shown
    view = json.loads(release.plugin("status", MODEL, "--json").stdout)
    assert (view["phase"], view["stableVersion"], view["canaryVersion"]) == ("Promoted", "1", None)

    # Version 2: a canary rollout, past Deploying (its pod is Ready, smoke inference began).
    release.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(model_manifest("2")))
    md = release.wait_status(canaryVersion="2", phase=IN_FLIGHT[1:])
    shown = release.plugin("status", MODEL).stdout
    assert "canary version" in shown and md["status"]["phase"] in shown, shown

    # promote: consumed at the next reconcile. It promotes from Progressing (traffic on the
    # canary); before that the rollout must pass its checks first, so it changes nothing.
    phase = md["status"]["phase"]
    assert "promotion requested" in release.plugin("promote", MODEL).stdout
    md = release.wait_command_consumed()
    if phase == "Progressing":
        md = release.wait_status(phase="Promoted", stableVersion="2")
    else:
        assert md["status"]["stableVersion"] == "1", md["status"]

    # abort: rolled back now, from whichever phase the rollout is in.
    if md["status"]["phase"] == "Promoted":  # promoted above: start another rollout
        release.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(model_manifest("1")))
        md = release.wait_status(canaryVersion="1", phase=IN_FLIGHT)
    stable = md["status"]["stableVersion"]
    assert "rollback requested" in release.plugin("abort", MODEL).stdout
    md = release.wait_status(phase="RolledBack", stableVersion=stable)
    assert md["status"]["lastCommand"]["name"] == "abort"
    assert md["status"]["lastCommand"]["result"] == "Applied"
    degraded = next(c for c in md["status"]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "Aborted"), degraded
    wait_sync(lambda: release.tracks() == ["stable"], timeout_s=30, what="canary deleted")
    shown = release.plugin("status", MODEL).stdout
    assert "RolledBack" in shown and "Aborted" in shown, shown

    # Someone edits the user-facing Service's selector: the router puts it back.
    release.kubectl(
        "patch", "service", MODEL, *ns, "--type=json",
        "-p", '[{"op": "remove", "path": "/spec/selector/tensorgate.dev~1track"}]',
    )  # fmt: skip
    wait_sync(
        lambda: (
            release.get_json("service", MODEL, *ns)["spec"]["selector"].get("tensorgate.dev/track")
            == "stable"
        ),
        timeout_s=30,
        what="the Service selector restored to the stable track",
    )

    # Scaling the model changes the stable Deployment in place.
    release.kubectl(
        "patch", f"{PLURAL}.{GROUP}", MODEL, *ns, "--type=merge",
        "-p", '{"spec": {"serving": {"replicas": 2}}}',
    )  # fmt: skip
    wait_sync(
        lambda: (
            [
                d["spec"]["replicas"]
                for d in release.get_json("deployment", "-l", f"tensorgate.dev/model={MODEL}", *ns)[
                    "items"
                ]
            ]
            == [2]
        ),
        timeout_s=30,
        what="the stable Deployment scaled to 2",
    )
    if player is not None:
        assert not player.failures, player.failures


def test_helm_upgrade_changes_operator_deployment(release: Release) -> None:
    before = release.get_json("deployment", RELEASE, "-n", RELEASE_NAMESPACE)
    release.helm_cmd(
        "upgrade", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "-f", str(release.values),
        "--set", "log.level=DEBUG", "--set", f"watchNamespaces={{{MODEL_NAMESPACE}}}",
    )  # fmt: skip
    status = json.loads(
        release.helm_cmd("status", RELEASE, "-n", RELEASE_NAMESPACE, "-o", "json").stdout
    )
    assert (status["info"]["status"], status["version"]) == ("deployed", 2)
    after = release.get_json("deployment", RELEASE, "-n", RELEASE_NAMESPACE)
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    args = after["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--log-level=DEBUG" in args and f"--namespace={MODEL_NAMESPACE}" in args, args
    assert "--log-level=INFO" not in args

    # The operator restarted with the new arguments still runs the model, now namespaced:
    # deleting the ModelDeployment lets it remove its finalizer.
    release.start_operator()
    release.kubectl("delete", f"{PLURAL}.{GROUP}", MODEL, "-n", MODEL_NAMESPACE, "--wait=false")
    wait_sync(
        lambda: (
            release.kubectl(
                "get", f"{PLURAL}.{GROUP}", MODEL, "-n", MODEL_NAMESPACE, check=False
            ).returncode
            != 0
        ),
        timeout_s=60,
        what="the ModelDeployment deleted (finalizer removed by the operator)",
    )
    # kopf's DEBUG lines (log.level), for a watch of the one namespace (watchNamespaces).
    watch = f"Starting the watch-stream for {PLURAL}.v1alpha1.{GROUP} in '{MODEL_NAMESPACE}'"
    assert watch in release.operator_log(limit=10**7), release.operator_log()
    release.stop_operator()


def test_helm_uninstall_leaves_no_operator_objects(release: Release) -> None:
    release.helm_cmd("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait")
    ns = ["-n", RELEASE_NAMESPACE]

    def leftovers() -> list[str]:
        namespaced = release.kubectl(
            "get", "serviceaccount,deployment,replicaset,service,role,rolebinding,configmap,secret",
            "-l", RELEASE_SELECTOR, *ns, "-o", "name",
        ).stdout.split()  # fmt: skip
        clusterwide = release.kubectl(
            "get", "clusterrole,clusterrolebinding", "-l", RELEASE_SELECTOR, "-o", "name"
        ).stdout.split()
        releases = release.kubectl(
            "get", "secret", "-l", f"owner=helm,name={RELEASE}", *ns, "-o", "name"
        ).stdout.split()
        return namespaced + clusterwide + releases

    wait_sync(lambda: not leftovers(), timeout_s=60, what="no release objects left")
    # Helm never deletes CRDs it installed from crds/: ModelDeployments survive an uninstall.
    release.kubectl("get", "crd", f"{PLURAL}.{GROUP}")
    listed = run([release.helm, "list", *ns, "-o", "json"], env=release.admin_env)
    assert json.loads(listed.stdout) == []
    gone = run([release.helm, "status", RELEASE, *ns], env=release.admin_env, check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr, gone.stderr
