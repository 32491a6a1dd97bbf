"""``tensorgate history`` and ``tensorgate revert``: the ledger on the command line.

- ``history NAME`` lists a model's rollouts, newest first: versions, accuracies, decisions.
  ``--verify`` recomputes every stored gate verdict from the inputs stored with it
  (:mod:`tensorgate.ledger.replay`) and exits 1, naming the rollout, on any mismatch.
- ``revert NAME --to VERSION`` reads the model spec VERSION was promoted with and merge-patches
  the resource's ``spec.model`` with it. The operator then rolls VERSION out like any other
  version: canary, smoke checks, golden set, steps.

Exit codes: 0 done, 1 the ledger or the Kubernetes API failed (or ``--verify`` found a
mismatch), 2 bad input (unknown version).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import typer

from tensorgate.errors import EdgeError, KubeAPIError, LedgerError
from tensorgate.ledger.base import RolloutRecord
from tensorgate.ledger.replay import MISMATCH, Verification, verify_record

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
KUBE_TIMEOUT_S = 10.0
KUBE_RETRIES = 3
KUBE_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

NameArg = Annotated[str, typer.Argument(help="ModelDeployment name.")]
NamespaceOpt = Annotated[str, typer.Option("-n", "--namespace", help="Namespace.")]
DsnOpt = Annotated[
    str | None,
    typer.Option(
        envvar="TENSORGATE_LEDGER_DSN",
        help="Ledger SQLAlchemy URL (default: a SQLite file in ~/.local/share).",
    ),
]


def _dsn(dsn: str | None) -> str:
    from tensorgate.ledger.sql import default_dsn

    return dsn or default_dsn()


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _when(record: RolloutRecord) -> str:
    return record.started_at.strftime("%Y-%m-%d %H:%M:%S")


def format_history(records: list[RolloutRecord]) -> str:
    """The rollouts as an aligned text table."""
    header = (
        "STARTED",
        "VERSION",
        "FROM",
        "DECISION",
        "STABLE-ACC",
        "CANARY-ACC",
        "DROP-UB",
        "SAMPLES",
        "REASON",
    )
    rows = [header]
    for r in records:
        gate = r.gate
        rows.append(
            (
                _when(r),
                r.candidate_version,
                r.stable_version or "-",
                r.decision or "in flight",
                _num(gate.stable_accuracy if gate else None),
                _num(gate.canary_accuracy if gate else None),
                _num(gate.upper_bound if gate else None),
                str(gate.samples) if gate and gate.samples is not None else "-",
                (r.reason or "")[:80],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def format_verifications(checked: list[Verification]) -> str:
    """One line per replayed verdict."""
    return "\n".join(
        f"{v.outcome.upper():<12} {v.row}: stored {v.stored}, replayed {v.replayed or '-'} "
        f"({v.detail})"
        for v in checked
    )


async def _history(dsn: str, namespace: str, name: str, limit: int) -> list[RolloutRecord]:
    from tensorgate.ledger.sql import open_sql_ledger

    ledger = await open_sql_ledger(dsn)
    try:
        return await ledger.history(namespace, name, limit)
    finally:
        await ledger.close()


async def _promoted(
    dsn: str, namespace: str, name: str, version: str
) -> tuple[dict[str, Any] | None, list[str]]:
    from tensorgate.ledger.sql import open_sql_ledger

    ledger = await open_sql_ledger(dsn)
    try:
        spec = await ledger.promoted_spec(namespace, name, version)
        known = (
            []
            if spec is not None
            else sorted(
                {
                    r.candidate_version
                    for r in await ledger.history(namespace, name, 1000)
                    if r.decision == "Promoted"
                },
                key=lambda v: (len(v), v),
            )
        )
        return spec, known
    finally:
        await ledger.close()


def _custom_objects(kubeconfig: str | None, context: str | None) -> Any:
    """A CustomObjectsApi on its own ApiClient (no global kubernetes configuration)."""
    from kubernetes import client, config

    try:
        if kubeconfig is None and context is None:
            try:
                configuration = client.Configuration()
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                return client.CustomObjectsApi(client.ApiClient(configuration))
            except config.ConfigException:
                pass
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    except (config.ConfigException, OSError) as exc:
        raise KubeAPIError(f"cannot load kubeconfig: {exc}") from exc
    return client.CustomObjectsApi(api_client)


def _kube_call(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """A kubernetes-client call with a timeout and bounded retries; errors -> KubeAPIError."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    attempt = 0
    while True:
        try:
            return call(*args, _request_timeout=KUBE_TIMEOUT_S, **kwargs)
        except ApiException as exc:
            if exc.status not in KUBE_RETRY_STATUSES or attempt >= KUBE_RETRIES:
                raise KubeAPIError(f"{what}: HTTP {exc.status} {exc.reason}", exc.status) from exc
        except (HTTPError, OSError) as exc:
            if attempt >= KUBE_RETRIES:
                raise KubeAPIError(f"{what}: {exc}") from exc
        attempt += 1
        time.sleep(0.2 * 2 ** (attempt - 1))


def patch_model(
    api: Any, namespace: str, name: str, model: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge-patch ``spec.model`` of a ModelDeployment; returns (model before, after)."""
    from tensorgate.api.spec import GROUP, PLURAL, VERSION

    what = f"modeldeployment {namespace}/{name}"
    current = _kube_call(
        f"get {what}", api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
    )
    before = dict((current.get("spec") or {}).get("model") or {})
    patched = _kube_call(
        f"patch {what}",
        api.patch_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        name,
        {"spec": {"model": model}},
        _content_type="application/merge-patch+json",
    )
    return before, dict((patched.get("spec") or {}).get("model") or {})


def register(app: typer.Typer) -> None:
    """Add ``history`` and ``revert`` to the ``tensorgate`` command line."""

    @app.command()
    def history(
        name: NameArg,
        namespace: NamespaceOpt = "default",
        limit: Annotated[int, typer.Option(min=1, help="Rollouts to show.")] = 20,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
        verify: Annotated[
            bool,
            typer.Option(
                "--verify", help="Recompute every stored gate verdict; exit 1 on a mismatch."
            ),
        ] = False,
        dsn: DsnOpt = None,
    ) -> None:
        """List a model's rollouts from the ledger: versions, accuracies, decisions."""
        try:
            records = asyncio.run(_history(_dsn(dsn), namespace, name, limit))
        except LedgerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_FAILED) from exc
        checked = {r.id: v for r in records if verify and (v := verify_record(r)) is not None}
        if as_json:
            rows = [r.to_dict() for r in records]
            for row in rows:
                if (v := checked.get(row["id"])) is not None:
                    row["verification"] = {
                        "outcome": v.outcome,
                        "stored": v.stored,
                        "replayed": v.replayed,
                        "detail": v.detail,
                    }
            typer.echo(json.dumps(rows, indent=2))
        elif not records:
            typer.echo(f"no rollouts of {namespace}/{name} in the ledger")
        else:
            typer.echo(format_history(records))
            if verify:
                typer.echo(format_verifications(list(checked.values())) or "no verdicts to verify")
        bad = [v for v in checked.values() if v.outcome == MISMATCH]
        for v in bad:
            typer.echo(
                f"error: {v.row}: stored verdict {v.stored} does not replay ({v.detail})",
                err=True,
            )
        if bad:
            raise typer.Exit(EXIT_FAILED)

    @app.command()
    def revert(
        name: NameArg,
        to: Annotated[str, typer.Option("--to", help="A previously promoted version.")],
        namespace: NamespaceOpt = "default",
        dsn: DsnOpt = None,
        kubeconfig: Annotated[
            str | None, typer.Option(envvar="KUBECONFIG", help="Kubeconfig file.")
        ] = None,
        context: Annotated[str | None, typer.Option(help="Kubeconfig context.")] = None,
    ) -> None:
        """Put a previously promoted version back (through the normal rollout and its checks)."""
        try:
            spec, known = asyncio.run(_promoted(_dsn(dsn), namespace, name, to))
        except LedgerError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_FAILED) from exc
        if spec is None or not isinstance(spec.get("model"), dict):
            promoted = ", ".join(known) or "none"
            typer.echo(
                f"version {to} of {namespace}/{name} was never promoted "
                f"(promoted versions: {promoted})",
                err=True,
            )
            raise typer.Exit(EXIT_BAD_INPUT)
        try:
            api = _custom_objects(kubeconfig, context)
            before, after = patch_model(api, namespace, name, spec["model"])
        except EdgeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_FAILED) from exc
        typer.echo(
            f"modeldeployment {namespace}/{name}: spec.model version "
            f"{before.get('version')} -> {after.get('version')} "
            f"({after.get('uri')}); the operator now rolls it out with smoke checks"
        )
