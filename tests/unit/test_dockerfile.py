"""The Dockerfile's invariants, checked without a Docker engine (none runs here)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
TF_DISTRIBUTIONS = {
    "tensorflow",
    "tensorflow-cpu",
    "tensorflow-gpu",
    "tensorflow-serving-api",
    "tf-keras",
    "keras",
    "tf-nightly",
}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    stage = -1
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
        logical = ""
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse((ROOT / "Dockerfile").read_text())


def final(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last and i.keyword == keyword]


def test_dockerfile_is_multi_stage_on_a_pinned_slim_python_311(
    instructions: list[Instruction],
) -> None:
    bases = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    assert len(bases) >= 2, "multi-stage: a builder and a runtime stage"
    for base in bases:
        assert BASE.match(base), f"base {base!r} is not a pinned python:3.11.N-slim-bookworm"
        assert "latest" not in base
    assert not [i for i in instructions if i.keyword == "ARG" and i.stage == -1], (
        "no ARG before FROM: the base must be readable, not computed"
    )


def test_dockerfile_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    users = final(instructions, "USER")
    assert users, "the runtime stage sets no USER (it would run as root)"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit() and int(user) == 10001
    assert not group or (group.isdigit() and int(group) != 0)


def test_dockerfile_entrypoint_is_tensorgate_run(instructions: list[Instruction]) -> None:
    (entrypoint,) = final(instructions, "ENTRYPOINT")
    assert json.loads(entrypoint.args) == ["tensorgate", "run"]
    assert not final(instructions, "CMD")


def test_dockerfile_is_read_only_rootfs_friendly(instructions: list[Instruction]) -> None:
    env = " ".join(i.args for i in final(instructions, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "HOME=/tmp" in env
    copies = [i.args for i in final(instructions, "COPY")]
    assert any(c.startswith("--from=builder /opt/venv") for c in copies), copies
    assert not final(instructions, "RUN"), "the runtime stage only copies the built venv"


def test_dockerfile_has_oci_labels(instructions: list[Instruction]) -> None:
    labels = dict(
        part.split("=", 1) for i in final(instructions, "LABEL") for part in shlex.split(i.args)
    )
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{key}" in labels
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (arg,) = [i.args for i in final(instructions, "ARG") if i.args.startswith("VERSION=")]
    assert arg == f"VERSION={version}"


def test_dockerfile_installs_the_package_without_extras_or_tensorflow(
    instructions: list[Instruction],
) -> None:
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    installs = [cmd for cmd in re.split(r"&&|;", runs) if "pip install" in cmd]
    assert len(installs) == 1
    words = shlex.split(installs[0])
    assert "--no-cache-dir" in words
    assert words[words.index("-c") + 1] == "constraints.txt"
    assert words[-1] == ".", "install the package itself, without [extras]"
    assert "tensorflow" not in runs.lower()


def test_package_base_dependencies_contain_no_tensorflow() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0].lower().replace("_", "-")
        for dep in project["dependencies"]
    }
    assert not names & TF_DISTRIBUTIONS


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; ! re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if pattern == "**" or fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_build_context_to_what_the_image_needs(
    instructions: list[Instruction],
) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        src
        for i in instructions
        if i.keyword == "COPY" and "--from" not in i.args
        for src in i.args.split()[:-1]
    ]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not _ignored(src.rstrip("/"), patterns), f"{src} is copied but ignored"
    for path in (".venv", ".git", "tests", ".cluster", "charts"):
        assert _ignored(path, patterns), f"{path} would be sent to the build"
