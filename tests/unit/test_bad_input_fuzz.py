"""Generated bad resources (hypothesis): mutated manifests through ``validate`` and ``render``.

Each example takes a valid ModelDeployment and applies one to three mutations at random paths:
a value replaced by a wrong type, a huge or negative number, a float for an int, a 100 KB
string, unicode, NUL bytes or an injection string (``../../x``, ``file://``, ``http://``,
``up or vector(1)``, a ``"`` with a newline and ``config {``, ``{{modle}}``); a field deleted;
an unknown field added; a mapping replaced by a list or a scalar. The text goes through the CLI
in-process (``validate`` and ``render -o json``). Every example either

- works: exit 0 from both, the JSON parses, every object name fits 63 characters, and the
  generated CRD (schema + CEL, ``tests/crdcheck.py``) accepts the manifest too, so the API
  server would not refuse what ``validate`` passed; or
- ends in exit 2 from both, every stderr line naming the file and a field (or the YAML
  problem), bounded in length, without a traceback.

``EXAMPLES`` generated inputs run in CI; the per-outcome counts are checked at the end.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import typer
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tensorgate.cli import app
from tests.crdcheck import crd_errors
from tests.unit.api.test_crd_table import BASE as MINIMAL

EXAMPLES = 1200
MAX_LINE = 1000
runner = CliRunner()
COMMAND = typer.main.get_command(app)  # built once: typer's runner rebuilds it every call

BASE: dict[str, Any] = copy.deepcopy(MINIMAL)  # the CRD table's valid manifest, filled out
BASE["spec"]["contract"]["signature"] = "serving_default"
BASE["spec"].update(
    {
        "serving": {
            "image": "tensorflow/serving:2.19.0",
            "replicas": 2,
            "gpu": {"count": 0},
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
            "credentialsSecret": "gcs-key",
            "nodeSelector": {"pool": "cpu"},
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "goldenSet": {"uri": "gs://bucket/golden/mnist.npz", "labels": "labels", "maxSamples": 100},
        "smoke": {"batchSize": 8, "timeout": "60s"},
        "analysis": {
            "maxAccuracyDrop": 0.02,
            "confidence": 0.95,
            "steps": [10, 50, 100],
            "interval": "60s",
            "failureLimit": 1,
            "metrics": [
                {
                    "name": "errors",
                    "query": 'sum(rate(x{model="{{model}}",track="{{track}}"}[{{interval}}]))',
                    "max": 0.01,
                }
            ],
        },
        "rollback": {"automatic": True},
        "paused": False,
    }
)

INJECTIONS = [
    "../../x",
    "../../../etc/passwd",
    "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data",
    "https://user:hunter2@example.com/m",
    "up or vector(1)",
    '{{model}}"} or vector(1) or up{a="',
    '"\n  }\n  config {\n    name: "evil"',
    "{{modle}}",
    "{{ model }}",
    "$(rm -rf /)",
    "; DROP TABLE rollouts; --",
    "a\x00b",
    "\u202eevil\u202c",
    "🙂" * 50,
    "ŝpéçîål",
    "-2",
    "1e400",
    "Infinity",
    "NaN",
    "0x1F",
    "yes",
    "",
    " ",
    "-",
    "a" * 64,
    "gs://",
    "pvc://",
    "pvc:///x",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, -(2**63), 10**18]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 2.0, -0.0, 1e308, 1e-308, 100.0]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(INJECTIONS),
    st.just("x" * 100_000),
    st.just("é" * 50_000),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, sub in node.items():
            yield from _paths(sub, (*prefix, key))
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            yield from _paths(sub, (*prefix, index))


def _nudged(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(min_value=-2, max_value=200)
    if isinstance(value, float):
        return st.floats(min_value=-0.5, max_value=1.5)
    if isinstance(value, str):
        return st.one_of(
            st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
            st.sampled_from(["1", "30s", "1m30s", "gs://b/m", "/models/m", "pvc://c/m", "500m"]),
        )
    return st.just(value)


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for part in path[:-1]:
            parent = parent[part]
        leaf = path[-1]
        action = draw(st.sampled_from(["nudge", "replace", "replace", "delete", "extra"]))
        if action == "nudge":  # same type, plausible value: many of these still work
            parent[leaf] = draw(_nudged(parent[leaf]))
        elif action == "replace":
            parent[leaf] = draw(values)
        elif action == "delete":
            del parent[leaf]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["colour", "replcas", "Uri", "", "spec"]))] = draw(values)
        else:
            parent.append(draw(values))
    return doc


OUTCOMES: Counter[str] = Counter()
_FIELD = re.compile(
    r"^<stdin>(#\d+)?: (spec[.:\[]|metadata|apiVersion|kind|not valid YAML|a YAML document|a manifest|top-level field|not UTF-8|more than)"
)

_WHERE = re.compile(r"^<stdin>(#\d+)?: ")
_POSITION = re.compile(r"\bline \d+|\bbyte \d+|document")


@pytest.fixture(scope="module", autouse=True)
def _enough_examples() -> Iterator[None]:
    yield
    print(f"\nbad-input fuzz outcomes: {dict(OUTCOMES)}")  # the README's figures (pytest -s)
    if OUTCOMES["works"] + OUTCOMES["exit 2"]:  # that test ran (not deselected with -k)
        ran = OUTCOMES["works"] + OUTCOMES["exit 2"]
        assert ran >= 1000, OUTCOMES
        # Both outcomes are exercised: the mix is a property of the generator (about 8 % work
        # with hypothesis 6.170), so the floors are shares with room, not exact counts.
        assert OUTCOMES["works"] >= ran * 0.04 and OUTCOMES["exit 2"] >= ran * 0.5, OUTCOMES
    if OUTCOMES["text: works"] + OUTCOMES["text: exit 2"]:
        assert OUTCOMES["text: works"] + OUTCOMES["text: exit 2"] >= TEXT_EXAMPLES, OUTCOMES


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(doc=mutated())
def test_mutated_manifest_works_or_exits_2_naming_a_field(doc: dict[str, Any]) -> None:
    text = yaml.dump(doc, Dumper=yaml.CSafeDumper, allow_unicode=True, sort_keys=False)
    checked = runner.invoke(COMMAND, ["validate", "-f", "-"], input=text)
    rendered = runner.invoke(COMMAND, ["render", "-o", "json", "-f", "-"], input=text)
    for result in (checked, rendered):
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(
            result.exception
        )
    assert checked.exit_code == rendered.exit_code, (checked.output, rendered.output)
    if checked.exit_code == 0:
        OUTCOMES["works"] += 1
        items = json.loads(rendered.stdout)["items"]
        assert all(len(o["metadata"]["name"]) <= 63 for o in items)
        assert crd_errors(doc) == [], "validate passed what the API server would refuse"
        return
    OUTCOMES["exit 2"] += 1
    assert checked.exit_code == 2, checked.output
    lines = checked.stderr.splitlines()
    assert lines and checked.stdout == ""
    for line in lines:
        assert _FIELD.match(line), line
        assert len(line) <= MAX_LINE, line[:300]


TEXT_EXAMPLES = 300
NASTY_TEXT = [
    "&a ", "*a", "<<: *a\n", "!!binary ", "!!python/name:os.system ", "---\n", "...\n", "? ",
    "{", "}", "[", "]", ": ", "- ", "|\n", ">\n", "#", "%YAML 1.1\n", "\t", "\x00", "\ufeff",
    "'", '"', "\\", "\n", "  ", "9" * 500, ".nan", "2024-01-01", "0o777", "=", "~", "@", "`",
]  # fmt: skip
GOOD_TEXT = yaml.safe_dump(BASE, sort_keys=False)


@st.composite
def garbled(draw: st.DrawFn) -> bytes:
    text = GOOD_TEXT
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        cut = draw(st.integers(min_value=0, max_value=8))
        piece = draw(st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=6)))
        text = text[:at] + piece + text[at + cut :]
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()) and data:  # a stray byte that is not UTF-8
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(min_value=0x80, max_value=0xFF))]) + data[at:]
    return data


@settings(
    max_examples=TEXT_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=garbled())
def test_garbled_yaml_text_works_or_exits_2(data: bytes) -> None:
    """Byte-level damage to a good file (YAML syntax, anchors, tags, NUL, BOM, bad UTF-8)."""
    result = runner.invoke(COMMAND, ["render", "-o", "json", "-f", "-"], input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 2), result.output
    OUTCOMES[f"text: {'works' if result.exit_code == 0 else 'exit 2'}"] += 1
    if result.exit_code == 0:
        json.loads(result.stdout)
        return
    for line in result.stderr.splitlines():  # the document and the line, or the field
        assert _FIELD.match(line) or (_WHERE.match(line) and _POSITION.search(line)), line
        assert len(line) <= MAX_LINE, line[:300]
