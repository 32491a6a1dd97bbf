"""The chart's RBAC equals what the operator uses, proven by the API server's audit log.

The test cluster's kube-apiserver logs every request at Metadata level (who, verb, resource,
response code; tests/cluster/audit-policy.yaml). This module runs after test_helm_install.py
(pytest runs a folder's files in name order), whose scenarios drive the helm-installed operator
through every call it makes, and reads every request made with that release's ServiceAccount
token (used by nothing else). It fails when

- the operator got a 403 (a grant the chart lacks), or
- the chart's ClusterRole grants a (group, resource, verb) that no scenario used (a grant
  nobody needs), except the optional grants that E2E_VALUES turns off (Gateway API, peering,
  ownerReferencesPermissionEnforcement), which are listed, not exercised.

The rules come from rendering the chart with the real Helm engine and the values the e2e
install used. Audit verbs are the request verbs RBAC checks (get, list, watch, create,
update, patch, delete, deletecollection), so they compare one to one.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.e2e.helm_fixtures import (
    CHART,
    E2E_VALUES,
    OPERATOR_USER,
    OPERATOR_USERS,
    OPTIONAL_GRANTS_OFF,
    RELEASE,
    RELEASE_NAMESPACE,
    audit_log_path,
)
from tests.helpers import require

if TYPE_CHECKING:
    from tests.e2e.conftest import Cluster

pytestmark = pytest.mark.cluster

# Collected before any test of the session runs: requests older than this belong to an
# earlier session on a reused cluster.
SESSION_START = datetime.now(UTC)

HELM_TESTS = "tests/e2e/test_helm_install.py::"
Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb); "" is the core group


@dataclass
class Call:
    grant: Grant | None  # None for non-resource URLs (/apis, /version, ...)
    uri: str
    code: int
    user: str
    # RBAC refused it: a 403 whose audit event does not say the authorizer allowed it (a 403
    # after "authorization.k8s.io/decision: allow" is admission's, e.g. NamespaceLifecycle's
    # "unable to create new content in namespace ... because it is being terminated").
    forbidden: bool = False


def render_operator_rules(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rules of the operator's ClusterRole as Helm renders them (not the aggregated
    -edit/-view roles, which are for people)."""
    import helm_python

    rendered = helm_python.Chart.load(str(CHART)).render(
        dict(values), name=RELEASE, namespace=RELEASE_NAMESPACE, is_install=True
    )
    rules: list[dict[str, Any]] = []
    for path, text in rendered.items():
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            is_role = doc and doc["kind"] in {"ClusterRole", "Role"}
            if is_role and doc["metadata"]["name"] == RELEASE:
                rules.extend(doc.get("rules") or [])
    return rules


def grants_of(rules: Iterable[Mapping[str, Any]]) -> set[Grant]:
    out: set[Grant] = set()
    for rule in rules:
        for group in rule.get("apiGroups") or []:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    out.add((group, resource, verb))
    return out


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


INFORMER_FALLBACK_GRANTS = {("", "services", "get"), ("apps", "deployments", "get")}
# A driver GETs its ModelDeployment only to re-read it: after a status write answered 409, and
# at start-up when the watched status still holds unrecorded ledger rows (an operator killed
# right after a status write). Whether a scenario here meets either is timing; both paths
# are driven on purpose elsewhere (tests/integration/operator/test_faults_kmock.py: a 409 on
# the first status PATCH; tests/e2e/test_faults_cluster.py: SIGKILL in every phase).
REREAD_GRANTS = {("tensorgate.dev", "modeldeployments", "get")}


def read_audit(path: Path, users: re.Pattern[str], since: datetime) -> list[Call]:
    """Every request by a user ``users`` matches, since ``since`` (one per auditID: a watch
    is logged when it starts and again when it ends)."""
    calls: dict[str, Call] = {}
    with path.open(encoding="utf-8", errors="replace") as log:
        for line in log:
            if "system:serviceaccount:" not in line:
                continue
            event = json.loads(line)
            impersonated = (event.get("impersonatedUser") or {}).get("username")
            user = impersonated or event["user"].get("username") or ""
            if not users.fullmatch(user):
                continue
            if _timestamp(event["requestReceivedTimestamp"]) < since:
                continue
            ref = event.get("objectRef")
            grant: Grant | None = None
            if ref and ref.get("resource"):
                resource = ref["resource"]
                if ref.get("subresource"):
                    resource += "/" + ref["subresource"]
                grant = (ref.get("apiGroup", ""), resource, event["verb"])
            code = int((event.get("responseStatus") or {}).get("code") or 0)
            decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision")
            forbidden = code == 403 and decision != "allow"
            calls[event["auditID"]] = Call(
                grant, event.get("requestURI", ""), code, user, forbidden
            )
    return list(calls.values())


def importlib_available(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def scenarios_after(request: pytest.FixtureRequest) -> list[str]:
    """Tests of test_helm_install.py scheduled after this one (name order puts them first;
    an explicit order on the command line may not)."""
    items = request.session.items
    here = items.index(request.node) if request.node in items else len(items)
    return [i.nodeid for i in items[here + 1 :] if i.nodeid.startswith(HELM_TESTS)]


def table(granted: set[Grant], optional: set[Grant], calls: list[Call]) -> str:
    """Markdown: each granted or used (group, resource, verb), its calls and status codes."""
    codes: dict[Grant, Counter[int]] = defaultdict(Counter)
    refused: set[Grant] = set()
    for call in calls:
        if call.grant is not None:
            codes[call.grant][call.code] += 1
            if call.forbidden:
                refused.add(call.grant)
    lines = [
        "| API group | resource | verb | calls | status codes | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for grant in sorted(granted | optional | set(codes)):
        group, resource, verb = grant
        seen = codes.get(grant, Counter())
        if grant in refused:
            verdict = "DENIED: missing grant"
        elif grant in optional:
            verdict = "optional, off in the e2e values"
        elif grant not in granted:
            verdict = "allowed by a built-in role"
        elif seen:
            verdict = "granted and used"
        else:
            verdict = "UNUSED grant"
        status = ", ".join(f"{c}x{n}" for c, n in sorted(seen.items())) or "-"
        lines.append(
            f"| `{group or 'core'}` | `{resource}` | {verb} | {sum(seen.values())} | {status} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


def test_rbac_audit_operator_uses_exactly_the_chart_grants(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    """``cluster``: the log lives as long as the session's cluster (torn down after this)."""
    later = scenarios_after(request)
    assert not later, f"these drive the audited operator but run after the audit: {later}"
    log = audit_log_path()
    require(
        log.is_file(),
        f"the API server's audit log {log}",
        "run the e2e on tests/cluster's cluster (make cluster), or set TENSORGATE_E2E_AUDIT_LOG "
        "to the audit log of the TENSORGATE_E2E_KUBECONFIG cluster",
    )
    require(
        importlib_available("helm_python"),
        "helm-python-sdk",
        "make venv (it is a dev dependency)",
    )
    granted = grants_of(render_operator_rules(E2E_VALUES))
    everything_on = {
        **E2E_VALUES,
        "rbac": {"gatewayAPI": True, "ownerReferencesPermissionEnforcement": True},
        "peering": {"enabled": True},
    }
    optional = grants_of(render_operator_rules(everything_on)) - granted
    calls = read_audit(log, re.compile(re.escape(OPERATOR_USER)), SESSION_START)
    require(
        bool(calls),
        f"requests by {OPERATOR_USER} in this session's audit log",
        "run it after test_helm_install.py, which drives the operator: pytest tests/e2e (not "
        "this file alone)",
    )
    report = table(granted, optional, calls)
    print(f"\nRBAC of {OPERATOR_USER} vs the audit log ({len(calls)} requests):\n{report}")
    print("optional grants off in the e2e values: " + "; ".join(OPTIONAL_GRANTS_OFF.values()))
    others = [c for c in read_audit(log, OPERATOR_USERS, SESSION_START) if c.user != OPERATOR_USER]
    for user, n in Counter(c.user for c in others).items():
        n_403 = sum(1 for c in others if c.user == user and c.forbidden)
        print(f"also the chart's {user}: {n} requests, {n_403} denied (not asserted: RBAC probes)")

    denied = sorted({f"{c.grant or c.uri} -> {c.code}" for c in calls if c.forbidden})
    assert not denied, f"the operator was denied (the chart lacks a grant): {denied}\n{report}"
    used = {c.grant for c in calls if c.grant is not None}
    # Reads the informers answer once synced: their GET is the fallback before the first sync,
    # so whether a scenario uses it depends on timing (the grant is needed all the same).
    unused = sorted(granted - used - INFORMER_FALLBACK_GRANTS - REREAD_GRANTS)
    assert not unused, (
        f"the chart grants what no scenario used: {unused} (drop the grant, or add the "
        f"scenario that needs it)\n{report}"
    )
    # The optional grants really are the documented ones, and nothing else.
    assert {r for _, r, _ in optional} <= {
        "httproutes",
        "modeldeployments/finalizers",
        "clusterkopfpeerings",
    }, optional


def test_rbac_audit_reader_maps_request_verbs(tmp_path: Path) -> None:
    """The audit reader on a recorded excerpt: impersonation, subresources, the core group,
    watches logged twice, and requests of other users or of earlier sessions left out."""
    user = "system:serviceaccount:tensorgate-system:tensorgate"
    before = "2026-01-01T00:00:00.000000Z"
    after = "2026-11-25T12:00:00.000000Z"

    def event(audit_id: str, verb: str, ref: dict[str, str] | None, code: int, **extra: Any) -> str:
        base: dict[str, Any] = {
            "auditID": audit_id,
            "stage": "ResponseComplete",
            "verb": verb,
            "user": {"username": user},
            "requestURI": "/x",
            "responseStatus": {"code": code},
            "requestReceivedTimestamp": after,
        }
        if ref is not None:
            base["objectRef"] = ref
        return json.dumps({**base, **extra})

    md_status = {"apiGroup": "tensorgate.dev", "resource": "modeldeployments"}
    lines = [
        event("1", "patch", {**md_status, "subresource": "status"}, 200),
        event("2", "watch", md_status, 200, stage="ResponseStarted"),
        event("2", "watch", md_status, 200),
        event("3", "create", {"resource": "events"}, 201),
        event("4", "get", {"resource": "pods"}, 403, user={"username": "someone-else"}),
        event("8", "get", {"resource": "pods"}, 200, user={"username": f"{user}-view-x"}),
        event(
            "5",
            "list",
            {"resource": "pods"},
            200,
            user={"username": "admin"},
            impersonatedUser={"username": user},
        ),
        event(
            "6",
            "delete",
            {"apiGroup": "apps", "resource": "deployments"},
            200,
            requestReceivedTimestamp=before,
        ),
        event("7", "get", None, 200),
        event(
            "9",
            "create",
            {"resource": "configmaps"},
            403,
            annotations={"authorization.k8s.io/decision": "allow"},
        ),
        event(
            "10",
            "create",
            {"resource": "secrets"},
            403,
            annotations={"authorization.k8s.io/decision": "forbid"},
        ),
    ]
    path = tmp_path / "audit.log"
    path.write_text("\n".join(lines) + "\n")
    calls = read_audit(path, re.compile(re.escape(user)), _timestamp("2026-06-01T00:00:00Z"))
    assert sorted((c.grant, c.code) for c in calls if c.grant) == [
        (("", "configmaps", "create"), 403),
        (("", "events", "create"), 201),
        (("", "pods", "list"), 200),
        (("", "secrets", "create"), 403),
        (("tensorgate.dev", "modeldeployments", "watch"), 200),
        (("tensorgate.dev", "modeldeployments/status", "patch"), 200),
    ]
    # a 403 the authorizer allowed (admission: a terminating namespace) is no RBAC denial
    assert sorted(c.grant for c in calls if c.forbidden) == [("", "secrets", "create")]
    assert [c.grant for c in calls].count(None) == 1
