"""``kubectl tensorgate``: read and drive ModelDeployments from kubectl.

Installed as the console script ``kubectl-tensorgate``, so ``kubectl tensorgate status NAME``
works once the package is on PATH. It only reads ModelDeployments and their Events and
merge-patches the ModelDeployment itself (an annotation or ``spec.paused``); the operator
does the rest. It never touches the serving Deployments.

Exit codes: 0 ok, 1 the API (or the ledger) failed, 2 bad input.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tensorgate.api.spec import GROUP, KIND, PLURAL, VERSION
from tensorgate.reconcile import COMMAND_ANNOTATION, COMMAND_ID_ANNOTATION, read_command

EXIT_API = 1
EXIT_BAD_INPUT = 2
DEFAULT_TIMEOUT_S = 10.0
RETRIES = 1
MERGE_PATCH = "application/merge-patch+json"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

app = typer.Typer(
    name="kubectl-tensorgate",
    help="Read and drive TensorGate ModelDeployments (a kubectl plugin).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class PluginError(Exception):
    """A failure worth one line to the user; ``exit_code`` is what the process returns."""

    def __init__(self, message: str, exit_code: int = EXIT_API) -> None:
        self.exit_code = exit_code
        super().__init__(message)


class ModelDeploymentApi(Protocol):
    """What the plugin needs from the cluster; tests hand in a fake."""

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        """The ModelDeployment; raises PluginError when absent."""

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Merge-patch the ModelDeployment; returns the patched object."""

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """core/v1 Events whose involvedObject is the ModelDeployment."""


class KubeApi:
    """``ModelDeploymentApi`` over the official ``kubernetes`` client, every call bounded."""

    def __init__(self, api_client: Any, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        from kubernetes import client

        self._api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._timeout_s = timeout_s

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return fn(*args, _request_timeout=self._timeout_s, **kwargs)
        except ApiException as exc:
            raise PluginError(_api_message(what, exc.status, exc.body or exc.reason)) from exc
        except HTTPError as exc:
            raise PluginError(f"{what}: cannot reach the API server: {exc}") from exc

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        obj = self._call(
            f"get modeldeployment {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )
        return dict(obj)

    def patch(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        obj = self._call(
            f"patch modeldeployment {namespace}/{name}",
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            dict(patch),
            _content_type=MERGE_PATCH,
        )
        return dict(obj)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        selector = f"involvedObject.name={name},involvedObject.kind={KIND}"
        result = self._call(
            f"list events of {namespace}/{name}",
            self._core.list_namespaced_event,
            namespace,
            field_selector=selector,
        )
        raw = self._api_client.sanitize_for_serialization(result)
        return list(raw.get("items") or [])


def _api_message(what: str, status: int | None, body: Any) -> str:
    message = body
    if isinstance(body, (str, bytes)):
        try:
            message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            message = body.decode() if isinstance(body, bytes) else body
    if status == 404:
        return f"{what}: not found"
    return f"{what}: {status} {message}"


@dataclass(frozen=True)
class Target:
    api: ModelDeploymentApi
    namespace: str
    name: str


def connect(
    kubeconfig: str | None, context: str | None, timeout_s: float
) -> tuple[ModelDeploymentApi, str]:
    """An API client and the default namespace: the kubeconfig first, then in-cluster."""
    from kubernetes import client
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    config: Any = kube_config  # kubernetes.config is untyped

    has_kubeconfig = bool(
        kubeconfig or os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().exists()
    )
    configuration = client.Configuration()
    configuration.retries = RETRIES  # urllib3's default (3) would quadruple every timeout
    try:
        if has_kubeconfig or context:
            api_client = config.new_client_from_config(
                config_file=kubeconfig,
                context=context,
                persist_config=False,
                client_configuration=configuration,
            )
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((c for c in contexts if c["name"] == context), active)
            namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
            return KubeApi(api_client, timeout_s), namespace
        config.load_incluster_config(client_configuration=configuration)
        namespace = SA_NAMESPACE_FILE.read_text().strip() or "default"
        return KubeApi(client.ApiClient(configuration), timeout_s), namespace
    except (ConfigException, OSError) as exc:
        raise PluginError(
            f"no usable kubeconfig or in-cluster config: {exc}", EXIT_BAD_INPUT
        ) from exc


# --- options shared by every command ------------------------------------------------------

NameArg = Annotated[str, typer.Argument(help="ModelDeployment name.")]
NamespaceOpt = Annotated[
    str | None,
    typer.Option("-n", "--namespace", help="Namespace; default: the kubeconfig context's."),
]
KubeconfigOpt = Annotated[
    str | None, typer.Option("--kubeconfig", help="Path to the kubeconfig file.")
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context.")]
TimeoutOpt = Annotated[
    float, typer.Option("--request-timeout", min=0.1, help="Seconds per API call.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _target(
    name: str, namespace: str | None, kubeconfig: str | None, context: str | None, timeout_s: float
) -> Target:
    api, default_namespace = connect(kubeconfig, context, timeout_s)
    return Target(api, namespace or default_namespace, name)


def _run(action: Callable[[], None]) -> None:
    try:
        action()
    except PluginError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from exc


def _console() -> Console:
    return Console(
        file=sys.stdout, width=int(os.environ.get("COLUMNS", "0")) or None, highlight=False
    )


# --- status -------------------------------------------------------------------------------

GATE_FIELDS = (
    ("stableAccuracy", "stable accuracy"),
    ("canaryAccuracy", "canary accuracy"),
    ("delta", "delta (stable - canary)"),
    ("upperBound", "upper bound of the drop"),
    ("pValue", "p-value"),
    ("samples", "samples"),
    ("agreement", "agreement"),
)


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def _event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def summarize(
    obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]], limit: int = 10
) -> dict[str, Any]:
    """The status view as plain data (what --json prints and the tables show)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    steps = list((spec.get("analysis") or {}).get("steps") or [])
    recent = sorted(events, key=_event_time)[-limit:] if limit > 0 else []
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "phase": status.get("phase"),
        "message": status.get("message"),
        "paused": bool(spec.get("paused", False)),
        "pendingCommand": _pending_command(meta, status),
        "lastCommand": status.get("lastCommand"),
        "stableVersion": status.get("stableVersion"),
        "canaryVersion": status.get("canaryVersion"),
        "canaryWeight": status.get("canaryWeight"),
        "currentStep": status.get("currentStep"),
        "steps": steps,
        "failedChecks": status.get("failedChecks"),
        "gate": status.get("gate") or {},
        "checks": list(status.get("checks") or []),
        "conditions": list(status.get("conditions") or []),
        "events": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "time": _event_time(e) or None,
                "count": e.get("count"),
            }
            for e in recent
        ],
    }


def _step_text(view: Mapping[str, Any]) -> str:
    step, steps = view["currentStep"], view["steps"]
    if step is None:
        return "-"
    if 0 <= step < len(steps):
        return f"{step + 1}/{len(steps)} ({steps[step]}%)"
    return f"{step + 1}/{len(steps)}"


def render_status(view: Mapping[str, Any], console: Console) -> None:
    title = f"ModelDeployment {view['namespace']}/{view['name']}"
    overview = Table(title=title, show_header=False, title_justify="left")
    overview.add_column("field", style="bold")
    overview.add_column("value")
    phase = str(view["phase"] or "-")
    style = {"RolledBack": "red", "Failed": "red", "Promoted": "green", "Paused": "yellow"}.get(
        phase, "cyan"
    )
    overview.add_row("phase", Text(phase, style=style))
    overview.add_row("message", view["message"] or "-")
    overview.add_row("stable version", _number(view["stableVersion"]))
    overview.add_row("canary version", _number(view["canaryVersion"]))
    weight = view["canaryWeight"]
    overview.add_row("canary weight", "-" if weight is None else f"{weight}%")
    overview.add_row("step", _step_text(view))
    overview.add_row("failed checks", _number(view["failedChecks"]))
    overview.add_row("paused", _number(view["paused"]))
    if view["pendingCommand"]:
        overview.add_row("pending command", str(view["pendingCommand"]))
    overview.add_row(
        "generation",
        f"{_number(view['observedGeneration'])} observed of {_number(view['generation'])}",
    )
    console.print(overview)

    gate = view["gate"]
    if gate:
        table = Table(title="Last gate", show_header=False, title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value")
        table.add_row("version", _number(gate.get("version")))
        table.add_row("decision", _number(gate.get("decision")))
        for key, label in GATE_FIELDS:
            table.add_row(label, _number(gate.get(key)))
        table.add_row("smoke passed", _number(gate.get("smokePassed")))
        for reason in gate.get("reasons") or []:
            table.add_row("reason", str(reason))
        console.print(table)
        if gate.get("smoke"):
            console.print(_checks_table("Smoke checks", gate["smoke"]))
    if view["checks"]:
        console.print(_checks_table("Metric checks", view["checks"]))

    conditions = Table(title="Conditions", title_justify="left")
    for column in ("type", "status", "reason", "message", "since"):
        conditions.add_column(column)
    for cond in view["conditions"]:
        conditions.add_row(
            cond.get("type", ""),
            cond.get("status", ""),
            cond.get("reason", ""),
            cond.get("message", ""),
            cond.get("lastTransitionTime") or "-",
        )
    console.print(conditions)

    events = Table(title="Recent events", title_justify="left")
    for column in ("time", "type", "reason", "message"):
        events.add_column(column)
    for event in view["events"]:
        kind = str(event["type"] or "")
        events.add_row(
            event["time"] or "-",
            Text(kind, style="red" if kind == "Warning" else ""),
            event["reason"] or "",
            event["message"] or "",
        )
    if not view["events"]:
        events.add_row("-", "", "", "no events (they expire after an hour)")
    console.print(events)


def _checks_table(title: str, checks: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("check", "passed", "value", "message"):
        table.add_column(column)
    for check in checks:
        passed = bool(check.get("passed"))
        table.add_row(
            str(check.get("name", "")),
            Text("yes" if passed else "no", style="green" if passed else "red"),
            _number(check.get("value")),
            str(check.get("message", "")),
        )
    return table


@app.command()
def status(
    name: NameArg,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    as_json: JsonOpt = False,
    events: Annotated[int, typer.Option("--events", min=0, help="Recent Events shown.")] = 10,
) -> None:
    """Phase, versions, traffic weight, step, last gate numbers, conditions, recent Events."""

    def action() -> None:
        t = _target(name, namespace, kubeconfig, context, request_timeout)
        obj = t.api.get(t.namespace, t.name)
        view = summarize(obj, t.api.events(t.namespace, t.name) if events else [], events)
        if as_json:
            typer.echo(json.dumps(view, indent=2))
        else:
            render_status(view, _console())

    _run(action)


# --- promote / abort / pause / resume -----------------------------------------------------


def _pending_command(meta: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    """The command annotation the operator has not acknowledged yet (status.lastCommand)."""
    command = read_command(meta)
    if command is None or (status.get("lastCommand") or {}).get("id") == command.id:
        return None
    return command.name


def _command(target: Target, command: str) -> dict[str, Any]:
    """Set the command with a fresh id: the operator applies it once and acknowledges the id
    in status.lastCommand; nothing is ever removed, so no newer command can be erased."""
    annotations = {COMMAND_ANNOTATION: command, COMMAND_ID_ANNOTATION: uuid.uuid4().hex[:12]}
    return target.api.patch(
        target.namespace, target.name, {"metadata": {"annotations": annotations}}
    )


def _report(obj: Mapping[str, Any], what: str) -> None:
    phase = (obj.get("status") or {}).get("phase") or "-"
    meta = obj.get("metadata") or {}
    typer.echo(
        f"{what} for modeldeployment {meta.get('namespace')}/{meta.get('name')} "
        f"(phase {phase}); the operator acknowledges it in status.lastCommand"
    )


def _act(
    name: str,
    namespace: str | None,
    kubeconfig: str | None,
    context: str | None,
    timeout_s: float,
    change: Callable[[Target], dict[str, Any]],
    what: str,
) -> None:
    """Connect, patch the ModelDeployment with ``change``, and say what was asked."""
    _run(lambda: _report(change(_target(name, namespace, kubeconfig, context, timeout_s)), what))


def _register_action(
    command: str, help_text: str, action: Callable[[Target], dict[str, Any]], what: str
) -> None:
    """``kubectl tensorgate COMMAND NAME``: one change to the object (one shape for all)."""

    def run(
        name: NameArg,
        namespace: NamespaceOpt = None,
        kubeconfig: KubeconfigOpt = None,
        context: ContextOpt = None,
        request_timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    ) -> None:
        _act(name, namespace, kubeconfig, context, request_timeout, action, what)

    app.command(command, help=help_text)(run)


def _register_command(command: str, help_text: str, what: str) -> None:
    """A command sent through the command annotation."""
    _register_action(command, help_text, lambda t: _command(t, command), what)


_register_command(
    "promote", "Promote the canary now, skipping the remaining steps.", "promotion requested"
)
_register_command(
    "abort", "Roll back now: all traffic to stable, the canary removed.", "rollback requested"
)
_register_command("retry", "Gate a rolled-back revision again from the start.", "retry requested")


def _set_paused(target: Target, paused: bool) -> dict[str, Any]:
    return target.api.patch(target.namespace, target.name, {"spec": {"paused": paused}})


_register_action(
    "pause",
    "Hold the rollout at its current step (sets spec.paused).",
    lambda t: _set_paused(t, True),
    "pause requested",
)
_register_action(
    "resume",
    "Continue a paused rollout (clears spec.paused).",
    lambda t: _set_paused(t, False),
    "resume requested",
)


# --- history ------------------------------------------------------------------------------

HISTORY_COLUMNS = (
    ("at", "time"),
    ("version", "version"),
    ("decision", "decision"),
    ("reason", "reason"),
    ("stableAccuracy", "stable acc."),
    ("canaryAccuracy", "canary acc."),
)


def read_ledger(dsn: str, namespace: str, name: str, limit: int) -> list[dict[str, Any]]:
    """Rollouts from the SQL ledger (``tensorgate.ledger``), newest first, as dicts."""
    import asyncio

    try:
        from tensorgate.ledger.sql import open_ledger
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith("tensorgate"):
            raise PluginError(
                "this installation has no SQL ledger (tensorgate.ledger); "
                "drop --ledger-dsn to read status.history"
            ) from exc
        raise PluginError(f"the SQL ledger needs a missing module: {exc.name}") from exc

    async def read() -> list[dict[str, Any]]:
        ledger = await open_ledger(dsn)
        try:
            return [record.to_dict() for record in await ledger.history(namespace, name, limit)]
        finally:
            await ledger.close()

    try:
        return asyncio.run(read())
    except Exception as exc:  # LedgerError, or SQLAlchemy's own (bad URL, driver missing)
        raise PluginError(f"reading the ledger failed: {exc}") from exc


def _ledger_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger record in the columns of status.history."""
    gate = record.get("gate") or {}
    return {
        "at": record.get("startedAt"),
        "version": record.get("candidateVersion"),
        "decision": record.get("decision") or "in flight",
        "reason": record.get("reason"),
        "stableAccuracy": gate.get("stableAccuracy"),
        "canaryAccuracy": gate.get("canaryAccuracy"),
    }


@app.command()
def history(
    name: NameArg,
    namespace: NamespaceOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    request_timeout: TimeoutOpt = DEFAULT_TIMEOUT_S,
    as_json: JsonOpt = False,
    ledger_dsn: Annotated[
        str | None,
        typer.Option(
            "--ledger-dsn",
            help="Read the SQL ledger (SQLAlchemy URL) instead of status.history.",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rollouts shown.")] = 20,
) -> None:
    """Past rollouts and their decisions: status.history, or the SQL ledger."""

    def action() -> None:
        if ledger_dsn:
            ns = namespace or connect(kubeconfig, context, request_timeout)[1]
            rows, source = read_ledger(ledger_dsn, ns, name, limit), "ledger"
            shown = [_ledger_row(row) for row in rows]
        else:
            t = _target(name, namespace, kubeconfig, context, request_timeout)
            ns = t.namespace
            obj = t.api.get(t.namespace, t.name)
            rows = list((obj.get("status") or {}).get("history") or [])[:limit]
            source, shown = "status.history", rows
        if as_json:
            typer.echo(
                json.dumps(
                    {"namespace": ns, "name": name, "source": source, "history": rows},
                    indent=2,
                    default=str,
                )
            )
            return
        table = Table(
            title=f"History of {ns}/{name} ({source}, newest first)", title_justify="left"
        )
        for _, label in HISTORY_COLUMNS:
            table.add_column(label)
        for row in shown:
            table.add_row(*(_number(row.get(key)) for key, _ in HISTORY_COLUMNS))
        if not shown:
            table.add_row("-", "", "", "no finished rollouts yet", "", "")
        _console().print(table)

    _run(action)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
