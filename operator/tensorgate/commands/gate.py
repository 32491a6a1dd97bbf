"""``tensorgate gate`` and ``tensorgate demo``: the gate's command line (the CLI edge).

This is the one place in ``gate/`` that picks serving implementations; TensorFlow is imported
lazily, only when a PATH must be served locally or gRPC is used.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from tensorgate.api.spec import (
    AnalysisSpec,
    ContractSpec,
    GoldenSetSpec,
    SmokeSpec,
    format_validation_error,
)
from tensorgate.errors import ConfigError, ServingError, SpecError
from tensorgate.gate.golden import load_golden
from tensorgate.gate.html_report import write_html
from tensorgate.gate.report import Decision, GateReport
from tensorgate.gate.runner import GateConfig, Progress, pre_run_warnings, run_gate
from tensorgate.serving.base import ClientOptions, ModelClient

__all__ = [
    "Endpoint",
    "load_contract",
    "parse_endpoint",
    "register",
    "render_report",
    "with_clients",
]

T = TypeVar("T")

EXIT_PROMOTE = 0
EXIT_ROLLBACK = 1
EXIT_BAD_INPUT = 2
# --deadline's default: the whole run (smoke and golden-set scoring), as long as the
# operator's default analysis.progressDeadline (10m) gives one phase.
DEADLINE_S = 600.0


class Protocol(StrEnum):
    GRPC = "grpc"
    REST = "rest"


@dataclass(frozen=True)
class Endpoint:
    """Where a model is: a local PATH (served for the run) or a running TF Serving URL."""

    kind: str  # "path", "rest" or "grpc"
    location: str
    model_name: str | None = None
    version: int | None = None


def parse_endpoint(text: str) -> Endpoint:
    """``http(s)://host:port[/v1/models/NAME[/versions/V]]``, ``grpc://host:port`` or a path."""
    parts = urlsplit(text)
    if parts.scheme in {"http", "https", "grpc"}:
        if not parts.netloc:
            raise ConfigError(f"{text}: a URL needs host:port")
        name: str | None = None
        version: int | None = None
        segments = [s for s in parts.path.split("/") if s]
        if segments:
            if segments[:2] != ["v1", "models"] or len(segments) not in (3, 5):
                raise ConfigError(f"{text}: expected a path /v1/models/NAME[/versions/N]")
            name = segments[2]
            if len(segments) == 5:
                if segments[3] != "versions" or not segments[4].isdigit():
                    raise ConfigError(f"{text}: expected /versions/N")
                version = int(segments[4])
        kind = "grpc" if parts.scheme == "grpc" else "rest"
        location = f"{parts.scheme}://{parts.netloc}" if kind == "rest" else parts.netloc
        return Endpoint(kind, location, name, version)
    if "://" in text:
        raise ConfigError(f"{text}: unsupported scheme (use http://, grpc:// or a path)")
    if not Path(text).is_dir():
        raise ConfigError(f"{text}: no such model directory")
    return Endpoint("path", text)


def load_contract(
    path: str,
) -> tuple[ContractSpec, SmokeSpec | None, AnalysisSpec | None, GoldenSetSpec | None]:
    """A contract YAML (the resource's ``spec.contract``) or a whole ModelDeployment."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping (the contract)")
    spec = doc.get("spec", doc) if isinstance(doc.get("spec"), dict) else doc
    whole = "contract" in spec
    raw_contract = spec["contract"] if whole else spec
    root = "spec.contract" if whole else "contract"
    try:
        contract = ContractSpec.model_validate(raw_contract)
        smoke = SmokeSpec.model_validate(spec["smoke"]) if whole and "smoke" in spec else None
        analysis = (
            AnalysisSpec.model_validate(spec["analysis"]) if whole and "analysis" in spec else None
        )
        golden = (
            GoldenSetSpec.model_validate(spec["goldenSet"])
            if whole and "goldenSet" in spec
            else None
        )
    except ValidationError as exc:
        raise SpecError([f"{path}: {line}" for line in format_validation_error(exc, root)]) from exc
    return contract, smoke, analysis, golden


class _RichProgress(Progress):
    def __init__(self, progress: RichProgress) -> None:
        self._progress = progress
        self._task: Any = None

    def stage(self, name: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[-1].total)
        self._task = self._progress.add_task(name, total=total)

    def advance(self, count: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, count)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Progress]:
    """A rich progress bar on stderr, or a silent one."""
    if not enabled:
        yield Progress()
        return
    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    with bar:
        yield _RichProgress(bar)


def _mark(passed: bool) -> str:
    return "[green]pass[/green]" if passed else "[red]FAIL[/red]"


def render_report(report: GateReport, console: Console, *, title: str = "TensorGate") -> None:
    """A short human report: the checks, the canary numbers, the decision and why."""
    table = Table(title=f"{title}: smoke inference (candidate)", show_lines=False)
    table.add_column("check")
    table.add_column("result")
    table.add_column("details", overflow="fold")
    for check in report.smoke.checks:
        table.add_row(check.name, _mark(check.passed), check.message)
    console.print(table)
    diff = report.smoke.contract_diff
    if diff is not None:
        console.print(f"contract diff vs the stable model: {diff.summary()}", highlight=False)
    canary = report.canary
    if canary.ran:
        t = Table(title="canary accuracy comparison (paired, same golden set)")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_row("samples", str(canary.samples))
        t.add_row("stable accuracy", f"{canary.stable_accuracy:.1%}")
        t.add_row("candidate accuracy", f"{canary.candidate_accuracy:.1%}")
        t.add_row("drop (stable - candidate)", f"{canary.drop:+.4f}")
        t.add_row(
            f"upper bound ({canary.confidence:.0%}, {canary.method})",
            f"{canary.upper_bound:.4f}",
        )
        t.add_row("maxAccuracyDrop", f"{canary.max_accuracy_drop}")
        t.add_row("p-value (H0: drop >= margin)", f"{canary.p_value:.3g}")
        t.add_row(
            "discordant (stable only / candidate only right)",
            f"{canary.stable_only_correct} / {canary.candidate_only_correct}",
        )
        t.add_row("prediction agreement", f"{canary.agreement:.1%}")
        for check in canary.checks:
            t.add_row(check.name, _mark(check.passed))
        console.print(t)
        if canary.recall_changes:  # informative: it does not decide
            shown = ", ".join(
                f"class {c.label}: {c.stable_recall:.0%}->{c.candidate_recall:.0%}"
                for c in canary.recall_changes[:5]
            )
            more = len(canary.recall_changes) - 5
            console.print(
                f"recall fell by more than the margin for {len(canary.recall_changes)} "
                f"class(es): {shown}{f' (+{more} more)' if more > 0 else ''}"
            )
    else:
        console.print("canary accuracy comparison: [yellow]not run[/yellow] (smoke failed)")
    for warning in report.warnings:
        console.print(f"[yellow]warning[/yellow]: {warning}", highlight=False)
    colour = "green" if report.decision == Decision.PROMOTE else "red"
    caught = ", ".join(report.caught_by) or "nothing"
    console.print(
        f"decision: [bold {colour}]{report.decision}[/bold {colour}]   caught by: {caught}"
    )
    for reason in report.reasons:
        console.print(f"  - {reason}", highlight=False)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _client(
    endpoint: Endpoint,
    protocol: Protocol,
    model_name: str,
    options: ClientOptions,
    signature: str,
    server: Any,
) -> ModelClient:
    name = endpoint.model_name or model_name
    kind = endpoint.kind if endpoint.kind != "path" else str(protocol)
    if kind == "rest":
        from tensorgate.serving.rest import RestModelClient

        url = server.rest_url if server is not None else endpoint.location
        return RestModelClient(
            url, name, version=endpoint.version, signature_name=signature, options=options
        )
    from tensorgate.serving.grpc import GrpcModelClient

    target = server.grpc_target if server is not None else endpoint.location
    return GrpcModelClient(
        target, name, version=endpoint.version, signature_name=signature, options=options
    )


def with_clients(
    stable: str,
    candidate: str,
    contract: ContractSpec,
    model_name: str,
    protocol: Protocol | None,
    options: ClientOptions,
    work: Callable[[ModelClient, ModelClient], Awaitable[T]],
) -> T:
    """Run ``work(stable, candidate)`` with clients for two endpoints (a PATH is served
    locally for the run; clients and servers are closed afterwards)."""
    endpoints = {"stable": parse_endpoint(stable), "candidate": parse_endpoint(candidate)}
    for role, ep in endpoints.items():
        if protocol is not None and ep.kind != "path" and ep.kind != str(protocol):
            raise ConfigError(
                f"--{role} {ep.location} is a {ep.kind} URL but --protocol is {protocol}"
            )
    chosen = protocol or Protocol.GRPC

    with ExitStack() as stack:
        servers: dict[str, Any] = {}
        for role, ep in endpoints.items():
            if ep.kind == "path":
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                from tensorgate.serving.backend import LocalModelServer

                servers[role] = stack.enter_context(
                    LocalModelServer(model_name, ep.location, require_version_folders=False)
                )

        async def run() -> T:
            clients = {
                role: _client(
                    ep, chosen, model_name, options, contract.signature, servers.get(role)
                )
                for role, ep in endpoints.items()
            }
            try:
                return await work(clients["stable"], clients["candidate"])
            finally:
                for client in clients.values():
                    await client.aclose()

        return asyncio.run(run())


def _gate(
    stable: str,
    candidate: str,
    golden: str,
    contract_path: str,
    max_accuracy_drop: float | None,
    confidence: float | None,
    model_name: str,
    protocol: Protocol | None,
    as_json: bool,
    timeout_s: float,
    batch_size: int,
    concurrency: int,
    report_path: Path | None = None,
    deadline_s: float = DEADLINE_S,
) -> int:
    if not deadline_s > 0:
        raise ConfigError(f"--deadline must be > 0 seconds (got {deadline_s})")
    contract, smoke, analysis, golden_spec = load_contract(contract_path)
    analysis = analysis or AnalysisSpec()
    updates: dict[str, float] = {}
    if max_accuracy_drop is not None:
        updates["max_accuracy_drop"] = max_accuracy_drop
    if confidence is not None:
        updates["confidence"] = confidence
    try:
        analysis = AnalysisSpec.model_validate({**analysis.model_dump(), **updates})
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, "options")) from exc
    config = GateConfig.build(contract, smoke=smoke, analysis=analysis, golden_set=golden_spec)
    golden_set = load_golden(golden, contract, golden_spec, slices=config.slices)
    for warning in pre_run_warnings(golden_set, config):
        typer.echo(f"warning: {warning}", err=True)
    options = ClientOptions(timeout_s=timeout_s, batch_size=batch_size, concurrency=concurrency)

    async def judge(stable_client: ModelClient, candidate_client: ModelClient) -> GateReport:
        with progress_bar(not as_json) as progress:
            return await _within_deadline(
                run_gate(stable_client, candidate_client, golden_set, config, progress=progress),
                deadline_s,
                golden_set.size,
            )

    report = with_clients(stable, candidate, contract, model_name, protocol, options, judge)

    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        render_report(report, Console())
    if report_path is not None:
        write_html(report, report_path)
    return EXIT_PROMOTE if report.decision == Decision.PROMOTE else EXIT_ROLLBACK


async def _within_deadline(run: Awaitable[T], deadline_s: float, samples: int) -> T:
    """``run`` cancelled at ``--deadline`` (a ``ServingError``: the gate could not run, as the
    operator counts a check past its progressDeadline as an edge failure): the per-exchange
    ``--timeout-s`` alone lets a server answering just under it on every batch hold the run
    for batches x timeout."""
    scope = asyncio.timeout(deadline_s)
    try:
        async with scope:
            return await run
    except TimeoutError as exc:
        if not scope.expired():
            raise
        raise ServingError(
            f"did not finish within --deadline {deadline_s:g}s (smoke and scoring {samples} "
            "golden samples on both models: the servers answer too slowly); raise --deadline "
            "if they are slow by design"
        ) from exc


def gate(
    stable: Annotated[
        str, typer.Option(help="Stable model: PATH, http://host:8501 or grpc://host:8500")
    ],
    candidate: Annotated[str, typer.Option(help="Candidate model: PATH or URL")],
    golden: Annotated[
        str, typer.Option(help="Golden set .npz (inputs, labels, expected_<output>)")
    ],
    contract: Annotated[
        str, typer.Option(help="Contract YAML (spec.contract) or a ModelDeployment")
    ],
    max_accuracy_drop: Annotated[
        float | None, typer.Option(help="Non-inferiority margin (default 0.02)")
    ] = None,
    confidence: Annotated[
        float | None,
        typer.Option(help="One-sided confidence (0.95 = at most 5% false promotions)"),
    ] = None,
    model_name: Annotated[str, typer.Option(help="TF Serving model name")] = "model",
    protocol: Annotated[
        Protocol | None, typer.Option(help="grpc or rest (for PATHs; URLs pick by scheme)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    timeout_s: Annotated[float, typer.Option(help="Per-request timeout in seconds")] = 30.0,
    batch_size: Annotated[int, typer.Option(help="Samples per predict request")] = 256,
    concurrency: Annotated[int, typer.Option(help="Requests in flight per model")] = 4,
    report_path: Annotated[
        Path | None,
        typer.Option("--report", help="Also write a self-contained HTML report to this file"),
    ] = None,
    deadline_s: Annotated[
        float,
        typer.Option(
            "--deadline",
            help="Seconds the whole run (smoke and golden-set scoring) may take; past it the "
            "gate stops with exit 2",
        ),
    ] = DEADLINE_S,
) -> None:
    """Smoke-test a candidate and compare it with the stable model: exit 0 promote, 1 rollback,
    2 bad input."""
    try:
        code = _gate(
            stable,
            candidate,
            golden,
            contract,
            max_accuracy_drop,
            confidence,
            model_name,
            protocol,
            as_json,
            timeout_s,
            batch_size,
            concurrency,
            report_path,
            deadline_s,
        )
    except SpecError as exc:
        raise _fail("\n".join(exc.errors)) from exc
    except ConfigError as exc:
        raise _fail(f"error: {exc}") from exc
    except ServingError as exc:
        raise _fail(f"error: cannot run the gate: {exc}") from exc
    raise typer.Exit(code)


def demo(
    protocol: Annotated[Protocol, typer.Option(help="grpc or rest")] = Protocol.GRPC,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    workdir: Annotated[
        Path | None, typer.Option(help="Keep the models and golden set here")
    ] = None,
) -> None:
    """Train a good and a silently broken model, serve both locally, and gate the broken one."""
    from tensorgate.commands.demo import run_demo

    console = Console()
    if not as_json:
        console.print(
            "[bold]TensorGate demo[/bold]: the same training code, once with labels shaped "
            "(N,) and once (N, 1)..."
        )
    with progress_bar(not as_json) as progress:
        result = run_demo(workdir, protocol=str(protocol), progress=progress)
    report = result.report
    if as_json:
        out = report.to_dict()
        out["demo"] = {
            "stableTrainAccuracy": round(result.stable_train_accuracy, 4),
            "candidateTrainAccuracy": round(result.candidate_train_accuracy, 4),
            "timingsSeconds": {k: round(v, 2) for k, v in result.timings_s.items()},
        }
        typer.echo(json.dumps(out, indent=2))
    else:
        render_report(report, console, title="demo")
        console.print(
            f"the candidate answered every request with well-formed probabilities; accuracy "
            f"{report.canary.stable_accuracy:.0%} -> {report.canary.candidate_accuracy:.0%}. "
            f"(trained in {result.timings_s['train']:.1f}s, gated in "
            f"{result.timings_s['gate']:.1f}s, {result.timings_s['total']:.1f}s in all)"
        )
    expected = report.decision == Decision.ROLLBACK
    if not expected:
        typer.echo("demo: the gate did not roll back the broken model", err=True)
    sys.stdout.flush()
    raise typer.Exit(0 if expected else 1)


def register(app: typer.Typer) -> None:
    """Add ``gate`` and ``demo`` to the ``tensorgate`` command line."""
    app.command("gate")(gate)
    app.command("demo")(demo)
