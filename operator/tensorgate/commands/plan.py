"""``tensorgate plan``: how many golden-set samples the accuracy gate needs (the CLI edge).

The numbers are exact (``tensorgate.engine.planner``): ``minSamples`` is the smallest golden
set on which two identical models promote, ``samplesFor80``/``samplesFor95`` the smallest on
which a candidate with a true drop of 0 promotes with 80 % / 95 % probability, at the given
disagreement rate (the share of samples exactly one of the two models gets right), or at the
rate measured by scoring two models on a golden set. ``manifest_warnings`` is what
``tensorgate validate`` prints for a golden set it can read locally.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from tensorgate.api.spec import AnalysisSpec, ModelDeploymentSpec, format_validation_error
from tensorgate.engine.planner import plan
from tensorgate.errors import ConfigError, ServingError, SpecError
from tensorgate.gate.canary import size_warning
from tensorgate.gate.golden import load_golden, read_npz
from tensorgate.gate.report import CanaryReport
from tensorgate.gate.runner import GateConfig, compare_with
from tensorgate.serving.base import ClientOptions, ModelClient

__all__ = ["manifest_warnings", "measured_disagreement", "plan_command", "register"]

EXIT_BAD_INPUT = 2


def measured_disagreement(canary: CanaryReport) -> float:
    """The share of golden samples exactly one of the two models classified correctly."""
    if canary.samples <= 0:
        raise ConfigError("the golden set has no samples")
    return (canary.stable_only_correct + canary.candidate_only_correct) / canary.samples


def manifest_warnings(spec: ModelDeploymentSpec) -> list[str]:
    """Warnings a manifest earns before anything runs: a margin that can never be proven, or
    a golden set (when it is a local file) too small to ever promote."""
    analysis = spec.analysis
    golden = spec.golden_set
    if golden is None:
        return []
    margin, confidence = analysis.max_accuracy_drop, analysis.confidence
    if margin <= 0.0:
        return [w for w in [size_warning(0, margin, confidence)] if w]
    if golden.uri is None or not Path(golden.uri).is_file():
        return []  # remote, a ConfigMap or in the image: its size is known when the gate runs
    try:
        labels = read_npz(golden.uri).get(golden.labels)
    except ConfigError as exc:
        return [f"goldenSet.uri: {exc}"]
    if labels is None:
        return [f"goldenSet.uri {golden.uri}: no labels array {golden.labels!r}"]
    samples = int(labels.shape[0]) if labels.ndim else 0
    if golden.max_samples is not None:
        samples = min(samples, golden.max_samples)
    warning = size_warning(samples, margin, confidence)
    return [f"goldenSet {golden.uri}: {warning}"] if warning else []


def _measure(
    stable: str,
    candidate: str,
    golden: str,
    contract_path: str,
    analysis: AnalysisSpec,
    model_name: str,
    timeout_s: float,
) -> float:
    from tensorgate.commands.gate import load_contract, with_clients

    contract, _, _, golden_spec = load_contract(contract_path)
    config = GateConfig.build(contract, analysis=analysis, golden_set=golden_spec)
    golden_set = load_golden(golden, contract, golden_spec, slices=config.slices)

    async def score(stable_client: ModelClient, candidate_client: ModelClient) -> CanaryReport:
        return await compare_with(stable_client, candidate_client, golden_set, config)

    options = ClientOptions(timeout_s=timeout_s)
    canary = with_clients(stable, candidate, contract, model_name, None, options, score)
    return measured_disagreement(canary)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def plan_command(
    max_accuracy_drop: Annotated[
        float, typer.Option(help="Non-inferiority margin (analysis.maxAccuracyDrop)")
    ],
    confidence: Annotated[
        float, typer.Option(help="One-sided confidence (0.95 = at most 5% false promotions)")
    ] = 0.95,
    disagreement: Annotated[
        float | None,
        typer.Option(help="Share of samples exactly one model gets right (default 0.05)"),
    ] = None,
    stable: Annotated[
        str | None, typer.Option(help="Stable model (PATH or URL) to measure disagreement")
    ] = None,
    candidate: Annotated[str | None, typer.Option(help="Candidate model (PATH or URL)")] = None,
    golden: Annotated[str | None, typer.Option(help="Golden set .npz to measure on")] = None,
    contract: Annotated[
        str | None, typer.Option(help="Contract YAML (needed with --stable/--candidate)")
    ] = None,
    model_name: Annotated[str, typer.Option(help="TF Serving model name")] = "model",
    timeout_s: Annotated[float, typer.Option(help="Per-request timeout in seconds")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Print the golden-set size the accuracy gate needs: the minimum that can ever promote,
    and the sizes for 80% and 95% power at a true drop of 0."""
    try:
        analysis = AnalysisSpec.model_validate(
            {"maxAccuracyDrop": max_accuracy_drop, "confidence": confidence}
        )
    except ValidationError as exc:
        raise _fail("\n".join(format_validation_error(exc, "options"))) from exc
    measuring = [x is not None for x in (stable, candidate, golden, contract)]
    if disagreement is not None and any(measuring):
        raise _fail("error: give --disagreement or --stable/--candidate/--golden, not both")
    if any(measuring) and not all(measuring):
        raise _fail("error: measuring needs --stable, --candidate, --golden and --contract")
    measured = False
    try:
        if all(measuring):
            assert stable and candidate and golden and contract
            rate = _measure(stable, candidate, golden, contract, analysis, model_name, timeout_s)
            measured = True
        else:
            rate = 0.05 if disagreement is None else disagreement
        result = plan(analysis.max_accuracy_drop, analysis.confidence, rate)
    except SpecError as exc:
        raise _fail("\n".join(exc.errors)) from exc
    except (ConfigError, ValueError) as exc:
        raise _fail(f"error: {exc}") from exc
    except ServingError as exc:
        raise _fail(f"error: cannot score the models: {exc}") from exc
    body: dict[str, Any] = result.to_dict() | {"disagreementMeasured": measured}
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    source = "measured" if measured else "assumed"
    typer.echo(
        f"maxAccuracyDrop {result.margin}, confidence {result.confidence} (one-sided), "
        f"disagreement {result.disagreement:.4f} ({source}), method {result.method}\n"
        f"  minSamples   {result.min_samples:>8}  (identical models promote from here on)\n"
        f"  samplesFor80 {result.samples_for_80:>8}  (80% power at a true drop of 0)\n"
        f"  samplesFor95 {result.samples_for_95:>8}  (95% power at a true drop of 0)"
    )


def register(app: typer.Typer) -> None:
    """Add ``plan`` to the ``tensorgate`` command line."""
    app.command("plan")(plan_command)
