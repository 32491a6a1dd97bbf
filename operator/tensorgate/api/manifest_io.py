"""Reading manifest files safely: bounded size, bounded alias expansion, plain JSON values.

``tensorgate validate`` / ``render`` / ``rollout`` read user files through :func:`load_manifests`.
Everything that can go wrong ends in one :class:`~tensorgate.errors.SpecError` whose lines name
the file, the document and (where YAML knows it) the line, plus what to change; never a
traceback, never a hang, and never the expanded input echoed back:

- at most :data:`MAX_MANIFEST_BYTES` per file (the API server's request limit), regular files
  or stdin only (``/dev/zero`` and FIFOs are refused before reading), UTF-8 only;
- the YAML event stream is checked before any object is built: nesting depth at most
  :data:`MAX_DEPTH`, at most :data:`MAX_NODES` nodes per document *after* alias expansion
  (a "billion laughs" bomb is refused after reading its few hundred bytes) and at most
  :data:`MAX_DOCUMENTS` documents;
- values are what JSON (and so the Kubernetes API) can hold: no duplicate keys, string keys,
  integers within 64 bits (no 4,300-digit integers), finite floats, timestamps kept as the
  strings they were written as, and no ``!!binary``, ``!!set``, ``!!omap`` or ``!!pairs``.
"""

from __future__ import annotations

import math
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.cyaml import CParser  # type: ignore[attr-defined]
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from tensorgate.api.spec import INT64_MAX
from tensorgate.errors import ConfigError, SpecError

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENTS",
    "MAX_MANIFEST_BYTES",
    "MAX_NODES",
    "Document",
    "load_manifests",
    "parse_manifest_text",
    "read_limited",
    "read_regular_file",
]

MAX_MANIFEST_BYTES = 3 * 1024 * 1024
"""Largest manifest file read (the API server refuses requests above 3 MiB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists in one document."""
MAX_NODES = 100_000
"""Most YAML nodes in one document, counting every alias as the whole tree it stands for."""
MAX_DOCUMENTS = 1_000
"""Most documents in one file."""

_Base: Any = yaml.CSafeLoader  # libyaml: the parser and composer run in C


@dataclass(frozen=True)
class Document:
    """One YAML document: where it came from (``file#index``) and its mapping."""

    where: str
    body: dict[str, Any]


def _describe(node: Node) -> str:
    if isinstance(node, ScalarNode):
        return repr(str(node.value)[:40])
    return "a list" if isinstance(node, SequenceNode) else "a mapping"


class _Constructor(SafeConstructor):
    """SafeConstructor reduced to JSON's values, with the checks Kubernetes would make."""

    yaml_constructors = dict(SafeConstructor.yaml_constructors)

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):  # pragma: no cover - the resolver guarantees it
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        explicit = sum(k.tag != "tag:yaml.org,2002:merge" for k, _ in node.value)
        self.flatten_mapping(node)
        merged = len(node.value) - explicit  # entries from `<<:` come first; explicit ones win
        out: dict[Any, Any] = {}
        written: set[str] = set()
        for position, (key_node, value_node) in enumerate(node.value):
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise ConstructorError(
                    None,
                    None,
                    f"mapping key {_describe(key_node)} is not a string (quote it)",
                    key_node.start_mark,
                )
            if position >= merged and key in written:
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key {key[:80]!r} (each key may appear once; "
                    "remove or merge the repeated one)",
                    key_node.start_mark,
                )
            if position >= merged:
                written.add(key)
            out[key] = self.construct_object(value_node, deep=deep)
        return out

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = str(node.value)
        digits = sum(c.isdigit() for c in text)
        if digits > 40:  # int() itself refuses 4,300 digits with a traceback; stop far sooner
            raise ConstructorError(
                None,
                None,
                f"integer with {digits} digits is out of range (Kubernetes integers are 64-bit)",
                node.start_mark,
            )
        value = int(super().construct_yaml_int(node))
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ConstructorError(
                None,
                None,
                f"integer {text[:40]} is out of range (Kubernetes integers are 64-bit)",
                node.start_mark,
            )
        return value

    def construct_yaml_float(self, node: ScalarNode) -> float:
        value = float(super().construct_yaml_float(node))
        if not math.isfinite(value):
            raise ConstructorError(
                None,
                None,
                f"number {str(node.value)[:40]!r} is not finite "
                "(JSON and the Kubernetes API hold finite numbers only)",
                node.start_mark,
            )
        return value

    def construct_timestamp_as_text(self, node: ScalarNode) -> str:
        return str(self.construct_scalar(node))

    def construct_refused(self, node: Node) -> Any:
        raise ConstructorError(
            None,
            None,
            f"tag {str(node.tag)[:80]} is not allowed (Kubernetes manifests hold plain "
            "JSON values; write the value as a string)",
            node.start_mark,
        )


_Constructor.yaml_constructors.update(
    {
        "tag:yaml.org,2002:int": _Constructor.construct_yaml_int,
        "tag:yaml.org,2002:float": _Constructor.construct_yaml_float,
        "tag:yaml.org,2002:timestamp": _Constructor.construct_timestamp_as_text,
        "tag:yaml.org,2002:binary": _Constructor.construct_refused,
        "tag:yaml.org,2002:set": _Constructor.construct_refused,
        "tag:yaml.org,2002:omap": _Constructor.construct_refused,
        "tag:yaml.org,2002:pairs": _Constructor.construct_refused,
        None: _Constructor.construct_refused,
    }
)


class _Loader(CParser, _Constructor, Resolver):  # type: ignore[misc]
    """libyaml's parser and composer with :class:`_Constructor`'s construction."""

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        _Constructor.__init__(self)
        Resolver.__init__(self)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A one-line account of a YAML error: its problem and position, never the input."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.reader.ReaderError):
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        return (
            f"character {char!r} at byte {exc.position} is not allowed in YAML "
            "(remove control characters such as NUL)"
        )
    text = str(problem or type(exc).__name__)
    if mark is not None:
        text += f" at line {mark.line + 1}, column {mark.column + 1}"
    return text


def _line(event: yaml.Event) -> str:
    mark = event.start_mark
    return "an unknown line" if mark is None else f"line {mark.line + 1}"


def _check_events(text: str, where: str) -> None:
    """Refuse deep nesting, alias bombs and too many documents from the event stream alone.

    The parser keeps no tree: each collection's size after alias expansion is summed on a
    stack as its events go by, and an alias adds the size its anchor was recorded with.
    """
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = []  # [anchor, expanded node count]
    documents = 0
    total = 0
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            total = 0
            if documents > MAX_DOCUMENTS:
                raise SpecError([f"{where}: more than {MAX_DOCUMENTS} documents in one file"])
            continue
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) > MAX_DEPTH:
                raise SpecError(
                    [
                        f"{where}#{documents - 1}: nested deeper than {MAX_DEPTH} levels at "
                        f"{_line(event)} (flatten the structure)"
                    ]
                )
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, count = stack.pop()
            if anchor is not None:
                sizes[anchor] = count
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes:
                raise SpecError(
                    [
                        f"{where}#{documents - 1}: alias *{str(event.anchor)[:40]} at "
                        f"{_line(event)} refers to an anchor that is undefined or contains "
                        "the alias itself (recursive)"
                    ]
                )
            count = sizes[event.anchor]
        elif isinstance(event, yaml.ScalarEvent):
            count = 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        else:
            continue
        if stack:
            stack[-1][1] += count
        else:
            total = count
        if count > MAX_NODES or (stack and stack[-1][1] > MAX_NODES) or total > MAX_NODES:
            raise SpecError(
                [
                    f"{where}#{documents - 1}: more than {MAX_NODES} values once YAML aliases "
                    f"are expanded (near {_line(event)}); an alias bomb? write the "
                    "values out or use fewer aliases"
                ]
            )


def parse_manifest_text(text: str, source: str) -> Iterator[Document]:
    """Every non-empty document of one file's text; a problem raises :class:`SpecError`."""
    try:
        _check_events(text, source)
        loader = _Loader(text)
        try:
            index = 0
            while loader.check_data():  # type: ignore[no-untyped-call]
                doc = loader.get_data()
                where = f"{source}#{index}"
                index += 1
                if doc is None:
                    continue
                if not isinstance(doc, dict):
                    raise SpecError(
                        [
                            f"{where}: a YAML document must be a mapping (got a "
                            f"{type(doc).__name__}); a ModelDeployment starts with apiVersion:"
                        ]
                    )
                yield Document(where, doc)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise SpecError([f"{source}: not valid YAML: {_yaml_problem(exc)}"]) from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise SpecError([f"{source}: nested too deeply"]) from None


_CHUNK = 1024 * 1024


def read_limited(stream: BinaryIO, max_bytes: int) -> bytes | None:
    """At most ``max_bytes`` from ``stream`` in 1 MiB chunks; None when there is more."""
    chunks: list[bytes] = []
    size = 0
    while size <= max_bytes:
        chunk = stream.read(min(_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return None


def read_regular_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; else ``ConfigError(reason)``.

    Opened non-blocking and checked with ``fstat`` before reading, so ``/dev/zero``, a FIFO
    without a writer or a folder is refused at once instead of read forever or waited on.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError("no such file") from None
    except OSError as exc:
        raise ConfigError(f"cannot open ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("not a regular file (a device, FIFO or folder)")
        if info.st_size > max_bytes:
            raise ConfigError(f"{info.st_size} bytes > limit {max_bytes}")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = read_limited(handle, max_bytes)
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if data is None:
        raise ConfigError(f"more than the limit of {max_bytes} bytes")
    return data


def _read_file(path: str, max_bytes: int) -> bytes:
    if path == "-":
        data = read_limited(sys.stdin.buffer, max_bytes)
        if data is None:
            raise SpecError([f"<stdin>: more than the limit of {max_bytes} bytes"])
        return data
    try:
        return read_regular_file(path, max_bytes)
    except ConfigError as exc:
        hint = " (pipe it in instead: -f - < PATH)" if "regular" in str(exc) else ""
        raise SpecError([f"{path}: {exc}{hint}"]) from None


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [f"{where}: not UTF-8 (byte {exc.start} is {data[exc.start]:#04x}); save it as UTF-8"]
        ) from None


def load_manifests(paths: list[str], max_bytes: int = MAX_MANIFEST_BYTES) -> list[Document]:
    """Every document of every file (``-`` is stdin), read and parsed within the bounds."""
    docs: list[Document] = []
    for path in paths:
        source = "<stdin>" if path == "-" else path
        text = _decode(_read_file(path, max_bytes), source)
        docs.extend(parse_manifest_text(text, source))
    return docs


MAX_GOLDEN_BYTES = 64 * 1024 * 1024
"""The largest golden-set file read (its arrays' inflated size is bounded apart)."""


def read_golden_file(path: str | os.PathLike[str], max_bytes: int = MAX_GOLDEN_BYTES) -> bytes:
    """The bytes of a golden-set file: a regular file of at most ``max_bytes``, else
    ``ConfigError``. Opened non-blocking, so a FIFO or a device is refused, not waited on."""
    try:
        return read_regular_file(path, max_bytes)
    except ConfigError as exc:
        raise ConfigError(
            f"golden set {path}: {exc}; point goldenSet.uri at an .npz file"
        ) from None
