"""`kubectl tensorgate`: the patches it sends, what it prints, and the real client's wire calls."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from tensorgate import kubectl_plugin
from tensorgate.kubectl_plugin import PluginError, app

runner = CliRunner()
NS, NAME = "ml", "mnist"
MD_PATH = f"/apis/tensorgate.dev/v1alpha1/namespaces/{NS}/modeldeployments/{NAME}"


def make_md(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tensorgate.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": NS, "generation": 3},
        "spec": {
            "model": {"name": "mnist", "version": "3"},
            "analysis": {"steps": [10, 25, 50, 100]},
        },
        "status": {
            "phase": "Progressing",
            "message": "step 2 of 4: 25% of traffic on version 3",
            "observedGeneration": 3,
            "stableVersion": "2",
            "canaryVersion": "3",
            "canaryWeight": 25,
            "currentStep": 1,
            "failedChecks": 0,
            "gate": {
                "version": "3",
                "decision": "promote",
                "smokePassed": True,
                "stableAccuracy": 0.9412,
                "canaryAccuracy": 0.9437,
                "delta": -0.0025,
                "upperBound": 0.0061,
                "pValue": 0.00031,
                "samples": 2000,
                "smoke": [
                    {
                        "name": "shape",
                        "passed": True,
                        "message": "probabilities (8, 10) == (-1, 10)",
                    }
                ],
            },
            "checks": [
                {
                    "name": "error-rate",
                    "passed": True,
                    "value": 0.002,
                    "message": "error-rate 0.002 <= max 0.01",
                }
            ],
            "history": [
                {
                    "version": "2",
                    "decision": "Promoted",
                    "reason": "Promoted",
                    "at": "2026-11-20T10:00:00Z",
                    "stableAccuracy": 0.93,
                    "canaryAccuracy": 0.9412,
                },
                {
                    "version": "1b",
                    "decision": "RolledBack",
                    "reason": "AccuracyGateFailed",
                    "at": "2026-11-19T09:00:00Z",
                    "stableAccuracy": 0.93,
                    "canaryAccuracy": 0.11,
                },
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Available",
                    "message": "stable version 2 serves",
                    "lastTransitionTime": "2026-11-25T10:00:00Z",
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "StepAdvanced",
                    "message": "weight 25%",
                    "lastTransitionTime": "2026-11-25T10:05:00Z",
                },
            ],
            **status,
        },
    }


EVENTS = [
    {
        "type": "Normal",
        "reason": "StepAdvanced",
        "message": "weight 10% -> 25%",
        "lastTimestamp": "2026-11-25T10:05:00Z",
        "count": 1,
    },
    {
        "type": "Normal",
        "reason": "AccuracyGatePassed",
        "message": "drop upper bound 0.0061 <= maxAccuracyDrop 0.02",
        "lastTimestamp": "2026-11-25T10:01:00Z",
        "count": 1,
    },
]


class FakeApi:
    """Records every patch; serves one ModelDeployment and its Events."""

    def __init__(self, obj: dict[str, Any] | None) -> None:
        self.obj = obj
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.event_queries: list[tuple[str, str]] = []

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        if self.obj is None or (namespace, name) != (NS, NAME):
            raise PluginError(f"get modeldeployment {namespace}/{name}: not found")
        return self.obj

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self.patches.append((namespace, name, json.loads(json.dumps(patch))))
        return self.get(namespace, name)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        self.event_queries.append((namespace, name))
        return EVENTS


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    api = FakeApi(make_md())
    monkeypatch.setattr(kubectl_plugin, "connect", lambda *_: (api, NS))
    monkeypatch.setenv("COLUMNS", "200")
    return api


@pytest.mark.parametrize(
    ("args", "patch"),
    [
        (["promote", NAME], {"metadata": {"annotations": {"tensorgate.dev/command": "promote"}}}),
        (["abort", NAME], {"metadata": {"annotations": {"tensorgate.dev/command": "abort"}}}),
        (["pause", NAME], {"spec": {"paused": True}}),
        (["resume", NAME], {"spec": {"paused": False}}),
    ],
    ids=["promote", "abort", "pause", "resume"],
)
def test_plugin_command_sends_exactly_one_merge_patch_to_the_cr(
    fake: FakeApi, args: list[str], patch: dict[str, Any]
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [(ns, n, without_command_id(p)) for ns, n, p in fake.patches] == [(NS, NAME, patch)]
    assert f"modeldeployment {NS}/{NAME} (phase Progressing)" in result.stdout


def without_command_id(patch: dict[str, Any]) -> dict[str, Any]:
    """The patch with its command id taken out (checked to be there: a fresh one each time)."""
    annotations = (patch.get("metadata") or {}).get("annotations")
    if not annotations or "tensorgate.dev/command" not in annotations:
        return patch
    rest = dict(annotations)
    assert len(rest.pop("tensorgate.dev/command-id")) == 12
    return {**patch, "metadata": {**patch["metadata"], "annotations": rest}}


def test_plugin_commands_get_a_fresh_id_each_time(fake: FakeApi) -> None:
    """Two promotes are two commands: the operator tells them apart by id (applied once)."""
    for _ in range(2):
        assert runner.invoke(app, ["promote", NAME]).exit_code == 0
    ids = [p["metadata"]["annotations"]["tensorgate.dev/command-id"] for _, _, p in fake.patches]
    assert len(set(ids)) == 2


def test_plugin_command_annotation_is_the_one_the_operator_consumes() -> None:
    from tensorgate.reconcile import COMMAND_ANNOTATION

    assert COMMAND_ANNOTATION == "tensorgate.dev/command"  # the key the patches above use


def test_plugin_namespace_option_overrides_the_context_namespace(fake: FakeApi) -> None:
    result = runner.invoke(app, ["promote", NAME, "-n", "other"])
    assert result.exit_code == 1
    assert "other/mnist: not found" in result.stderr
    assert [(ns, n, without_command_id(p)) for ns, n, p in fake.patches] == [
        ("other", NAME, {"metadata": {"annotations": {"tensorgate.dev/command": "promote"}}})
    ]


def test_plugin_status_prints_phase_weights_gate_conditions_and_events(fake: FakeApi) -> None:
    result = runner.invoke(app, ["status", NAME])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        "ModelDeployment ml/mnist",
        "Progressing",
        "25%",
        "2/4 (25%)",
        "stable accuracy",
        "0.9412",
        "0.9437",
        "-0.0025",
        "0.0061",
        "0.00031",
        "2000",
        "Smoke checks",
        "probabilities (8, 10)",
        "Metric checks",
        "error-rate 0.002 <= max 0.01",
        "StepAdvanced",
        "Available",
        "weight 10% -> 25%",
        "AccuracyGatePassed",
    ):
        assert text in out, f"{text!r} missing from:\n{out}"
    # Events oldest first, newest last.
    assert out.index("drop upper bound") < out.index("weight 10% -> 25%")
    assert fake.event_queries == [(NS, NAME)]
    assert fake.patches == []


def test_plugin_status_json_is_the_summary(fake: FakeApi) -> None:
    result = runner.invoke(app, ["status", NAME, "--json", "--events", "1"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["phase"] == "Progressing"
    assert (view["stableVersion"], view["canaryVersion"], view["canaryWeight"]) == ("2", "3", 25)
    assert (view["currentStep"], view["steps"]) == (1, [10, 25, 50, 100])
    assert view["gate"]["upperBound"] == 0.0061 and view["gate"]["samples"] == 2000
    assert [c["reason"] for c in view["conditions"]] == ["Available", "StepAdvanced"]
    assert view["events"] == [
        {
            "type": "Normal",
            "reason": "StepAdvanced",
            "message": "weight 10% -> 25%",
            "time": "2026-11-25T10:05:00Z",
            "count": 1,
        }
    ]
    assert view["paused"] is False and view["pendingCommand"] is None


def test_plugin_status_of_a_new_resource_without_status_still_prints(fake: FakeApi) -> None:
    assert fake.obj is not None
    fake.obj.pop("status")
    result = runner.invoke(app, ["status", NAME])
    assert result.exit_code == 0, result.output
    assert "phase" in result.stdout and "Conditions" in result.stdout


def test_plugin_status_of_a_missing_resource_exits_1(fake: FakeApi) -> None:
    fake.obj = None
    result = runner.invoke(app, ["status", NAME])
    assert result.exit_code == 1
    assert "error: get modeldeployment ml/mnist: not found" in result.stderr


def test_plugin_history_from_status_newest_first(fake: FakeApi) -> None:
    result = runner.invoke(app, ["history", NAME])
    assert result.exit_code == 0, result.output
    assert "status.history" in result.stdout
    assert result.stdout.index("Promoted") < result.stdout.index("AccuracyGateFailed")
    result = runner.invoke(app, ["history", NAME, "--json", "--limit", "1"])
    data = json.loads(result.stdout)
    assert data["source"] == "status.history"
    assert [row["version"] for row in data["history"]] == ["2"]


class StubLedger:
    """Stands in for ``tensorgate.ledger.sql.SqlLedger``; returns real RolloutRecords."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.closed = False

    async def history(self, namespace: str, name: str, limit: int = 20) -> list[Any]:
        from tensorgate.ledger.base import GateResult, RolloutRecord

        self.calls.append((namespace, name, limit))
        started = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
        return [
            RolloutRecord(
                id=7,
                namespace=namespace,
                model=name,
                rollout_key="r-7",
                candidate_version="3",
                stable_version="2",
                started_at=started,
                decision="RolledBack",
                reason="AccuracyGateFailed: accuracy 0.11 < 0.93",
                gate=GateResult(stable_accuracy=0.93, canary_accuracy=0.11),
            )
        ]

    async def close(self) -> None:
        self.closed = True


def test_plugin_history_from_the_ledger(fake: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorgate.ledger import sql

    stub, dsns = StubLedger(), []

    async def open_ledger(dsn: str, **_: Any) -> StubLedger:
        dsns.append(dsn)
        return stub

    monkeypatch.setattr(sql, "open_ledger", open_ledger)
    result = runner.invoke(app, ["history", NAME, "--ledger-dsn", "sqlite:///x.db", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "ledger" and data["history"][0]["rolloutKey"] == "r-7"
    assert (dsns, stub.calls, stub.closed) == (["sqlite:///x.db"], [(NS, NAME, 20)], True)
    result = runner.invoke(app, ["history", NAME, "--ledger-dsn", "sqlite:///x.db"])
    assert result.exit_code == 0, result.output
    for text in ("ledger", "2026-11-25T11:00:00", "RolledBack", "0.1100", "AccuracyGateFailed"):
        assert text in result.stdout


def test_plugin_history_with_a_bad_ledger_url_exits_1(fake: FakeApi) -> None:
    result = runner.invoke(app, ["history", NAME, "--ledger-dsn", "nope://x"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: reading the ledger failed: ")


def test_plugin_history_without_a_ledger_module_says_so(
    fake: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorgate.ledger.sql", None)
    result = runner.invoke(app, ["history", NAME, "--ledger-dsn", "sqlite:///x.db"])
    assert result.exit_code == 1
    assert "no SQL ledger" in result.stderr and "drop --ledger-dsn" in result.stderr


# --- the real kubernetes client, against a recording HTTP server --------------------------


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []
        self.obj = make_md()
        self.delay_s = 0.0


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client timed out
            self.wfile.write(data)

    def _record(self, body: Any = None) -> tuple[str, dict[str, list[str]]]:
        url = urlsplit(self.path)
        self.server.requests.append(
            {
                "method": self.command,
                "path": url.path,
                "query": parse_qs(url.query),
                "contentType": self.headers.get("Content-Type"),
                "body": body,
            }
        )
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        return url.path, parse_qs(url.query)

    def do_GET(self) -> None:
        path, _ = self._record()
        if path == MD_PATH:
            self._answer(200, self.server.obj)
        elif path == f"/api/v1/namespaces/{NS}/events":
            self._answer(
                200,
                {
                    "apiVersion": "v1",
                    "kind": "EventList",
                    "metadata": {},
                    "items": [
                        {
                            "metadata": {"name": "e1", "namespace": NS},
                            "involvedObject": {"name": NAME, "kind": "ModelDeployment"},
                            **EVENTS[0],
                        }
                    ],
                },
            )
        else:
            self._answer(404, {"kind": "Status", "code": 404, "message": f"{path} not found"})

    def do_PATCH(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        path, _ = self._record(json.loads(self.rfile.read(length)))
        self._answer(200, self.server.obj) if path == MD_PATH else self._answer(
            404, {"kind": "Status", "code": 404, "message": "not found"}
        )


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[Recorder, Path]]:
    server = Recorder()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [
                    {"name": "test", "context": {"cluster": "c", "user": "u", "namespace": NS}}
                ],
            }
        )
    )
    try:
        yield server, kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def test_plugin_real_client_reads_the_cr_and_its_events(
    api_server: tuple[Recorder, Path],
) -> None:
    server, kubeconfig = api_server
    result = runner.invoke(app, ["status", NAME, "--kubeconfig", str(kubeconfig), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["events"][0]["reason"] == "StepAdvanced"
    (get_md, list_events) = server.requests
    assert (get_md["method"], get_md["path"]) == ("GET", MD_PATH)  # namespace from context
    assert (list_events["method"], list_events["path"]) == (
        "GET",
        f"/api/v1/namespaces/{NS}/events",
    )
    assert list_events["query"]["fieldSelector"] == [
        f"involvedObject.name={NAME},involvedObject.kind=ModelDeployment"
    ]


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (["abort", NAME], {"metadata": {"annotations": {"tensorgate.dev/command": "abort"}}}),
        (["pause", NAME], {"spec": {"paused": True}}),
    ],
    ids=["abort", "pause"],
)
def test_plugin_real_client_sends_a_merge_patch_to_the_cr_only(
    api_server: tuple[Recorder, Path], args: list[str], body: dict[str, Any]
) -> None:
    server, kubeconfig = api_server
    result = runner.invoke(app, [*args, "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 0, result.output
    sent = [{**r, "body": without_command_id(r["body"])} for r in server.requests]
    assert sent == [
        {
            "method": "PATCH",
            "path": MD_PATH,
            "query": {},
            "contentType": "application/merge-patch+json",
            "body": body,
        }
    ]


def test_plugin_real_client_gives_up_after_the_request_timeout(
    api_server: tuple[Recorder, Path],
) -> None:
    server, kubeconfig = api_server
    server.delay_s = 5.0
    started = time.monotonic()
    result = runner.invoke(
        app, ["status", NAME, "--kubeconfig", str(kubeconfig), "--request-timeout", "0.2"]
    )
    assert result.exit_code == 1
    assert "cannot reach the API server" in result.stderr
    assert time.monotonic() - started < 2.5  # (1 try + 1 retry) x 0.2 s, plus start-up
    assert len(server.requests) == 2


def test_plugin_real_client_reports_a_missing_resource(
    api_server: tuple[Recorder, Path],
) -> None:
    _, kubeconfig = api_server
    result = runner.invoke(app, ["status", "nope", "-n", "ml", "--kubeconfig", str(kubeconfig)])
    assert result.exit_code == 1
    assert "get modeldeployment ml/nope: not found" in result.stderr
