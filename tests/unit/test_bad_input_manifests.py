"""Nasty manifests through the real console script, the TF Serving model config, and secrets.

The fixed corpus lives in ``tests/fixtures/bad_manifests/`` (one file per attack, each a valid
manifest with one thing broken; see its README). Every file is run through ``tensorgate
validate`` in a subprocess with a wall-clock timeout and an address-space limit: each must end
in exit 2 with a message naming the file and the field, in bounded time and memory, with no
traceback and without echoing the (expanded) input.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2
from typer.testing import CliRunner

from tensorgate.api.spec import ModelRef
from tensorgate.cli import app
from tensorgate.metrics.templates import render as render_query
from tensorgate.platform.kubernetes.manifests import models_config
from tensorgate.redact import redact

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "bad_manifests"
CONSOLE_SCRIPT = Path(sys.executable).parent / "tensorgate"
TIMEOUT_S = 60
MEMORY_LIMIT_BYTES = 2 * 1024**3
MAX_MESSAGE_BYTES = 2048
MAX_RSS_BYTES = 128 * 1024**2
runner = CliRunner()

# file -> a fragment every error report must hold (None: the file is fine and renders)
EXPECTED: dict[str, str | None] = {
    "alias-bomb.yaml": "alias bomb",
    "binary-value.yaml": "binary is not allowed",
    "cpu-negative.yaml": "spec.serving.resources.requests.cpu",
    "date-value.yaml": None,
    "deep-nesting.yaml": "nested deeper than 64",
    "duplicate-keys.yaml": "duplicate key 'replicas'",
    "golden-uri-dotdot.yaml": "spec.goldenSet.uri",
    "golden-uri-http.yaml": "spec.goldenSet.uri",
    "golden-uri-relative.yaml": "spec.goldenSet.uri",
    "huge-int-4300-digits.yaml": "4300 digits",
    "int-beyond-64-bits.yaml": "64-bit",
    "interval-400-digits.yaml": "spec.analysis.interval",
    "list-document.yaml": "#0: a YAML document must be a mapping",
    "memory-garbage.yaml": "spec.serving.resources.limits.memory",
    "metadata-a-list.yaml": "metadata: must be a mapping",
    "model-uri-file-scheme.yaml": "spec.model.uri",
    "model-uri-injection.yaml": "spec.model.uri",
    "multi-document-garbage.yaml": "not valid YAML",
    "name-100kb.yaml": "metadata.name: 100000 characters",
    "name-not-dns.yaml": "metadata.name",
    "name-too-long.yaml": "at most 56",
    "nan-limit.yaml": "not finite",
    "non-mapping-key.yaml": "is not a string",
    "non-utf8.yaml": "not UTF-8",
    "nul-byte.yaml": "'\\x00'",
    "python-tag.yaml": "is not allowed",
    "query-typo-placeholder.yaml": "{{modle}}",
    "recursive-alias.yaml": "recursive",
    "replicas-float.yaml": "spec.serving.replicas",
    "replicas-yes.yaml": "booleans",
    "scalar-document.yaml": "must be a mapping",
    "second-document-a-list.yaml": "#1: a YAML document must be a mapping",
    "secret-traversal.yaml": "spec.serving.credentialsSecret",
    "set-value.yaml": "set is not allowed",
    "tab-indentation.yaml": "line 8",
    "unknown-field.yaml": "spec.serving.replcas: unknown field",
    "utf16.yaml": "not UTF-8",
    "wrong-kind.yaml": "kind: got 'Deployment'",
}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    max_rss_bytes: int


def _vm_hwm_kib(pid: int) -> int:
    try:
        with Path(f"/proc/{pid}/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _run(*args: str) -> Run:
    """The console script in a child with a deadline and a memory limit (bash sets it and
    execs the script in the same process); its peak RSS is read from ``/proc/PID/status``
    (``VmHWM`` belongs to the memory after exec; ``ru_maxrss`` would count this large test
    process, whose memory the child shares until exec)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        limit_kib = MEMORY_LIMIT_BYTES // 1024
        pid = os.posix_spawn(
            "/bin/bash",
            ["bash", "-c", f'ulimit -v {limit_kib} && exec "$0" "$@"', str(CONSOLE_SCRIPT), *args],
            {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
            ],
        )
        peak_kib, deadline = 0, time.monotonic() + TIMEOUT_S
        while True:  # VmHWM: the peak RSS of the child's own memory (after exec), sampled
            peak_kib = max(peak_kib, _vm_hwm_kib(pid))
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert not killed, f"{args} ran past {TIMEOUT_S} s (or out of memory)"
        out.seek(0)
        err.seek(0)
        return Run(
            os.waitstatus_to_exitcode(status),
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            peak_kib * 1024,
        )


def test_corpus_table_lists_every_fixture() -> None:
    files = sorted(p.name for p in CORPUS.glob("*.yaml"))
    assert files == sorted(EXPECTED), "tests/fixtures/bad_manifests and EXPECTED differ"
    assert sum(v is not None for v in EXPECTED.values()) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_through_console_script(name: str) -> None:
    path = CORPUS / name
    result = _run("validate", "-f", str(path))
    fragment = EXPECTED[name]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.max_rss_bytes < MAX_RSS_BYTES, result.max_rss_bytes
    if fragment is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert result.stdout == ""
    assert str(path) in result.stderr  # names the file (and the document or line)
    assert fragment in result.stderr, result.stderr
    assert len(result.stderr.encode()) <= MAX_MESSAGE_BYTES, len(result.stderr)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_through_render_json(name: str) -> None:
    """``render -o json`` (in-process): the same verdicts, and the JSON parses when fine."""
    result = runner.invoke(app, ["render", "-o", "json", "-f", str(CORPUS / name)])
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    if EXPECTED[name] is None:
        assert result.exit_code == 0, result.output
        items = json.loads(result.stdout)["items"]
        dep = next(o for o in items if o["kind"] == "Deployment")
        assert dep["spec"]["template"]["spec"]["affinity"] == {"since": "2024-01-01"}
    else:
        assert result.exit_code == 2 and EXPECTED[name] in result.stderr, result.output


def test_corpus_alias_bomb_is_small_on_disk_and_huge_expanded() -> None:
    """The bomb is real: a plain YAML loader would build 9**10 leaves from < 1 KB."""
    text = (CORPUS / "alias-bomb.yaml").read_text()
    assert len(text) < 2048 and text.count("*l") == 81


def test_models_config_escapes_injection_and_parses_as_one_config() -> None:
    """The model config is protobuf text format: TF Serving reads it with
    ``TextFormat::ParseFromString`` (tensorflow/serving ``tensorflow_serving/util/proto_util.h``,
    called from ``model_servers/server.cc``). A URI that closes its string and opens another
    ``config { ... }`` (validation bypassed) must stay one string of one pinned config."""
    evil = 'gs://b/m"\n  }\n  config {\n    name: "evil"\n    base_path: "/x\\'
    model = ModelRef.model_construct(name="mnist", version="2", uri=evil + "\x00é")
    config = text_format.Parse(models_config(model), model_server_config_pb2.ModelServerConfig())
    (only,) = config.model_config_list.config
    assert only.name == "mnist"
    assert only.base_path == evil + "\x00é"
    assert list(only.model_version_policy.specific.versions) == [2]


def test_models_config_plain_uri_unchanged() -> None:
    model = ModelRef(name="mnist", version="7", uri="gs://bucket/models/mnist")
    text = models_config(model)
    assert 'base_path: "gs://bucket/models/mnist"' in text
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert config.model_config_list.config[0].model_platform == "tensorflow"


def _doc(**serving: object) -> dict[str, object]:
    doc = yaml.safe_load((ROOT / "examples" / "cpu-pvc.yaml").read_text())
    doc["spec"]["serving"].update(serving)
    return doc


def test_render_names_the_secret_and_holds_no_value(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(_doc(credentialsSecret="planted-secret")))
    result = runner.invoke(app, ["render", "-f", str(path)])
    assert result.exit_code == 0, result.output
    objs = list(yaml.safe_load_all(result.stdout))
    assert not any(o["kind"] == "Secret" for o in objs)
    dep = next(o for o in objs if o["kind"] == "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "planted-secret"}}]
    assert "env" not in container  # values come from the Secret at run time, never from us


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model.uri", "s3://AKIAEXAMPLE:hunter2@bucket/models/m"),
        ("goldenSet.uri", "http://admin:hunter2@127.0.0.1/golden.npz"),
        ("goldenSet.uri", "postgresql://tg:hunter2@db/x?sslpassword=hunter2"),
        ("serving.credentialsSecret", "https://user:hunter2@vault/x"),
    ],
)
def test_error_messages_never_print_a_password(tmp_path: Path, field: str, value: str) -> None:
    doc = _doc()
    section, key = field.split(".")
    doc["spec"].setdefault(section, {})[key] = value  # type: ignore[index, union-attr]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["validate", "-f", str(path)])
    assert result.exit_code == 2
    assert f"spec.{field}" in result.stderr
    assert "hunter2" not in result.output, result.output


def test_redact_masks_dsn_and_url_passwords() -> None:
    assert redact("postgresql://tg:hunter2@127.0.0.1:5432/db") == (
        "postgresql://tg:***@127.0.0.1:5432/db"
    )
    assert (
        redact("at http://u:p@127.0.0.1:9090: refused") == "at http://u:***@127.0.0.1:9090: refused"
    )
    assert redact("https://ghp_token@github.com/x") == "https://***@github.com/x"
    assert redact("postgresql://h/db?user=a&password=hunter2") == (
        "postgresql://h/db?user=a&password=***"
    )
    assert (
        redact("gs://bucket/path@v2 and sqlite:///x.db") == "gs://bucket/path@v2 and sqlite:///x.db"
    )


def test_query_template_escapes_label_values() -> None:
    """A value that tries to close its label matcher stays inside the quoted string."""
    evil = 'a"} or vector(1) or up{b="\n\\'
    query = render_query(
        'sum(x{model="{{model}}",track="{{track}}"})',
        model=evil,
        namespace="ml",
        track="canary",
        interval_s=60,
    )
    assert query == 'sum(x{model="a\\"} or vector(1) or up{b=\\"\\n\\\\",track="canary"})'
    unescaped = query.replace("\\\\", "").replace('\\"', "")
    assert unescaped.count('"') == 4  # two matchers, two quotes each: nothing broke out
