"""The `tensorgate` command line. Exit codes: 0 ok/promote, 1 rollback/failure, 2 bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import typer
import yaml

from tensorgate.api.crd import Yaml11SafeDumper
from tensorgate.api.manifest_io import load_manifests
from tensorgate.api.spec import parse_resource
from tensorgate.errors import ConfigError, SpecError
from tensorgate.redact import redact
from tensorgate.settings import GoldenSourceOptions, PrometheusOptions

app = typer.Typer(
    name="tensorgate",
    help="Gate and progressively roll out TensorFlow models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_BAD_INPUT = 2


def read_documents(paths: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, document) for every YAML document in the files ('-' is stdin).

    Reading is bounded (size, nesting, alias expansion; see ``api.manifest_io``); a problem
    raises ``SpecError``."""
    for doc in load_manifests(paths):
        yield doc.where, doc.body


def _bad_input(problems: list[str]) -> typer.Exit:
    for line in problems:
        typer.echo(redact(line).replace("\n", "\\n"), err=True)  # one problem, one line
    return typer.Exit(EXIT_BAD_INPUT)


def _load_valid(paths: list[str]) -> list[dict[str, Any]]:
    """Parse every document; on any problem print all field errors and exit 2."""
    docs: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        for where, doc in read_documents(paths):
            try:
                parse_resource(doc)
                docs.append(doc)
            except SpecError as exc:
                problems.extend(f"{where}: {line}" for line in exc.errors)
    except SpecError as exc:
        problems.extend(exc.errors)
    if problems:
        raise _bad_input(problems)
    return docs


FileOpt = Annotated[
    list[str], typer.Option("-f", "--filename", help="Manifest file, or - for stdin.")
]


PromCaOpt = Annotated[
    str | None,
    typer.Option(
        "--prometheus-ca-file", help="PEM CA bundle that signs Prometheus's TLS certificate."
    ),
]
PromCertOpt = Annotated[
    str | None,
    typer.Option("--prometheus-cert-file", help="PEM client certificate for Prometheus (mTLS)."),
]
PromKeyOpt = Annotated[
    str | None,
    typer.Option("--prometheus-key-file", help="PEM private key of --prometheus-cert-file."),
]
PromUserOpt = Annotated[
    str | None,
    typer.Option("--prometheus-username", help="Basic-auth user for Prometheus."),
]
PromPasswordOpt = Annotated[
    str | None,
    typer.Option(
        "--prometheus-password-file", help="File holding the basic-auth password (re-read)."
    ),
]
PromTokenOpt = Annotated[
    str | None,
    typer.Option("--prometheus-bearer-token-file", help="File holding a bearer token (re-read)."),
]
PromHeaderOpt = Annotated[
    list[str],
    typer.Option(
        "--prometheus-header", help="Extra request header K=V (repeatable; not for secrets)."
    ),
]


GoldenMaxBytesOpt = Annotated[
    int, typer.Option(min=1, help="Largest gs:// or s3:// golden set fetched, in bytes.")
]
GoldenTimeoutOpt = Annotated[
    float, typer.Option(min=0.1, help="Timeout of each golden-set request, seconds.")
]
GoldenS3EndpointOpt = Annotated[
    str | None, typer.Option(help="S3-compatible endpoint for s3:// golden sets.")
]
GoldenS3RegionOpt = Annotated[str | None, typer.Option(help="Region of s3:// buckets.")]
GoldenGCSEndpointOpt = Annotated[
    str | None, typer.Option(help="GCS-compatible endpoint for gs:// golden sets.")
]
GoldenAnonymousOpt = Annotated[
    bool, typer.Option(help="Unsigned golden-set requests when no Secret is referenced.")
]


def prometheus_options(params: Mapping[str, Any]) -> PrometheusOptions:
    """The ``--prometheus-*`` flags of a command (its ``ctx.params``) as one options object;
    a malformed header exits 2."""
    headers: list[tuple[str, str]] = []
    for item in params["prometheus_header"]:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            typer.echo(f"--prometheus-header: got {item!r}; expected NAME=VALUE", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        headers.append((key.strip(), value))
    return PrometheusOptions(
        ca_file=params["prometheus_ca_file"],
        cert_file=params["prometheus_cert_file"],
        key_file=params["prometheus_key_file"],
        username=params["prometheus_username"],
        password_file=params["prometheus_password_file"],
        bearer_token_file=params["prometheus_bearer_token_file"],
        headers=tuple(headers),
    )


def golden_source_options(params: Mapping[str, Any]) -> GoldenSourceOptions:
    """The ``--golden-*`` flags of a command (its ``ctx.params``)."""
    return GoldenSourceOptions(
        max_bytes=params["golden_max_bytes"],
        timeout_s=params["golden_timeout"],
        s3_endpoint_url=params["golden_s3_endpoint"],
        s3_region=params["golden_s3_region"],
        gcs_endpoint_url=params["golden_gcs_endpoint"],
        anonymous=params["golden_anonymous"],
    )


@app.command()
def validate(filename: FileOpt) -> None:
    """Check ModelDeployment manifests; print field errors and exit 2 when invalid (and warn
    when a local golden set is too small to ever promote)."""
    from tensorgate.commands.plan import manifest_warnings

    for doc in _load_valid(filename):
        for warning in manifest_warnings(parse_resource(doc)):
            typer.echo(f"warning: {warning}", err=True)


@app.command()
def render(
    filename: FileOpt,
    output: Annotated[str, typer.Option("-o", "--output", help="yaml or json")] = "yaml",
) -> None:
    """Print exactly the objects the operator would create, without a cluster."""
    from tensorgate.platform.kubernetes.manifests import render_objects

    if output not in {"yaml", "json"}:
        typer.echo(f"--output: got {output!r}; expected yaml or json", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    objects: list[dict[str, Any]] = []
    for doc in _load_valid(filename):
        objects.extend(render_objects(doc))
    try:
        if output == "json":
            items = {"apiVersion": "v1", "kind": "List", "items": objects}
            text = json.dumps(items, indent=2, allow_nan=False) + "\n"
        else:
            text = yaml.dump_all(objects, Dumper=Yaml11SafeDumper, sort_keys=False)
    except (TypeError, ValueError, yaml.YAMLError) as exc:  # a value JSON cannot hold
        raise _bad_input([f"render: a value cannot be written as {output} ({exc})"]) from None
    typer.echo(text, nl=False)


@app.command()
def run(
    ctx: typer.Context,
    namespace: Annotated[
        list[str], typer.Option("-n", "--namespace", help="Namespace to watch (repeatable).")
    ] = [],  # noqa: B006 - typer reads the default, never mutates it
    peering: Annotated[
        str | None, typer.Option(help="kopf peering name (for several replicas).")
    ] = None,
    liveness: Annotated[
        str | None, typer.Option(help="Liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Port of the operator's /metrics endpoint.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address /metrics binds to.")] = "127.0.0.1",
    prometheus_url: Annotated[
        str | None, typer.Option(envvar="TENSORGATE_PROMETHEUS_URL", help="Prometheus URL.")
    ] = None,
    prometheus_ca_file: PromCaOpt = None,
    prometheus_cert_file: PromCertOpt = None,
    prometheus_key_file: PromKeyOpt = None,
    prometheus_username: PromUserOpt = None,
    prometheus_password_file: PromPasswordOpt = None,
    prometheus_bearer_token_file: PromTokenOpt = None,
    prometheus_header: PromHeaderOpt = [],  # noqa: B006 - typer reads the default
    golden_max_bytes: GoldenMaxBytesOpt = GoldenSourceOptions.max_bytes,
    golden_timeout: GoldenTimeoutOpt = GoldenSourceOptions.timeout_s,
    golden_s3_endpoint: GoldenS3EndpointOpt = None,
    golden_s3_region: GoldenS3RegionOpt = None,
    golden_gcs_endpoint: GoldenGCSEndpointOpt = None,
    golden_anonymous: GoldenAnonymousOpt = False,
    ledger_dsn: Annotated[
        str | None, typer.Option(envvar="TENSORGATE_LEDGER_DSN", help="SQLAlchemy URL.")
    ] = None,
    ledger_spool_dir: Annotated[
        str | None,
        typer.Option(
            envvar="TENSORGATE_LEDGER_SPOOL_DIR",
            help="Directory where transitions wait while the ledger is down (survives restarts).",
        ),
    ] = None,
    interval: Annotated[
        float,
        typer.Option(help="Resync: the longest an idle resource goes without a decision (s)."),
    ] = 600.0,
    log_format: Annotated[str, typer.Option(help="plain or json")] = "plain",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run the operator (uses the in-cluster ServiceAccount, else KUBECONFIG)."""
    import asyncio

    from tensorgate.app import configure_logging, run_operator
    from tensorgate.settings import Settings

    prometheus = prometheus_options(ctx.params)
    golden_sources = golden_source_options(ctx.params)
    settings = Settings(
        namespaces=tuple(namespace),
        peering=peering,
        liveness_endpoint=liveness,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        prometheus_url=prometheus_url,
        prometheus=prometheus,
        golden_sources=golden_sources,
        ledger_dsn=ledger_dsn,
        ledger_spool_dir=ledger_spool_dir,
        reconcile_interval_s=interval,
        log_format=log_format,
        log_level=log_level,
    )
    if prometheus_url:
        from tensorgate.metrics.prometheus import check_options, split_credentials

        try:
            has_credentials = split_credentials(prometheus_url)[1] is not None
            check_options(prometheus, url_has_credentials=has_credentials)
        except ConfigError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from exc
    configure_logging(settings)
    from tensorgate.serving.tensors import keep_freed_memory

    keep_freed_memory()  # the gate sends golden sets in multi-MiB requests: reuse their pages
    asyncio.run(run_operator(settings))


@app.command()
def rollout(
    ctx: typer.Context,
    filename: FileOpt,
    local: Annotated[bool, typer.Option("--local", help="Run on local processes.")] = False,
    prometheus: Annotated[
        str | None, typer.Option("--prometheus", help="Prometheus URL for prometheus checks.")
    ] = None,
    prometheus_ca_file: PromCaOpt = None,
    prometheus_cert_file: PromCertOpt = None,
    prometheus_key_file: PromKeyOpt = None,
    prometheus_username: PromUserOpt = None,
    prometheus_password_file: PromPasswordOpt = None,
    prometheus_bearer_token_file: PromTokenOpt = None,
    prometheus_header: PromHeaderOpt = [],  # noqa: B006 - typer reads the default
    golden_max_bytes: GoldenMaxBytesOpt = GoldenSourceOptions.max_bytes,
    golden_timeout: GoldenTimeoutOpt = GoldenSourceOptions.timeout_s,
    golden_s3_endpoint: GoldenS3EndpointOpt = None,
    golden_s3_region: GoldenS3RegionOpt = None,
    golden_gcs_endpoint: GoldenGCSEndpointOpt = None,
    golden_anonymous: GoldenAnonymousOpt = False,
    rate: Annotated[float, typer.Option(help="User requests per second replayed.")] = 20.0,
    deadline: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Apply v1, then roll out v2 through every phase; exit 0 promoted, 1 rolled back."""
    import asyncio

    from rich.console import Console

    from tensorgate.local_rollout import TimelineEntry, run_local_rollout

    if not local:
        typer.echo(
            "rollout: only --local is implemented here; in a cluster, "
            "kubectl apply the new version and the operator rolls it out",
            err=True,
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    docs = _load_valid(filename)
    options = prometheus_options(ctx.params)
    err = Console(stderr=True)

    def show(e: TimelineEntry) -> None:
        if not as_json:
            checks = f"  [{'; '.join(e.checks)}]" if e.checks else ""
            err.print(
                redact(
                    f"{e.at_s:7.1f}s  v{e.version:<4} {e.phase:<13} {e.weight:>3}%  "
                    f"{e.message}{checks}"
                ),
                markup=False,
                highlight=False,
            )

    try:
        result = asyncio.run(
            run_local_rollout(
                docs,
                prometheus_url=prometheus,
                prometheus_options=options,
                golden_sources=golden_source_options(ctx.params),
                rate_per_s=rate,
                deadline_s=deadline,
                on_entry=show,
            )
        )
    except SpecError as exc:
        raise _bad_input(exc.errors) from exc
    except ConfigError as exc:
        raise _bad_input([str(exc)]) from exc
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        served = result.canary_user_requests_served
        typer.echo(f"decision: {result.decision}")
        typer.echo(
            f"user requests sent: {dict(result.user_requests)}; "
            f"user requests served by v{docs[-1]['spec']['model']['version']}: {served}"
        )
    raise typer.Exit(0 if result.decision == "promoted" else 1)


@app.command(hidden=True)
def crd() -> None:
    """Print the generated CustomResourceDefinition (what `make crds` writes)."""
    from tensorgate.api.crd import render_crd

    typer.echo(render_crd(), nl=False)


def _register_optional_commands() -> None:
    """Commands that live beside their subsystem register themselves here. A listed module
    that is missing is an error (a silent skip once hid ``history`` and ``revert``)."""
    import importlib

    for module in (
        "tensorgate.commands.gate",
        "tensorgate.commands.plan",
        "tensorgate.commands.history",
    ):
        importlib.import_module(module).register(app)


_register_optional_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
