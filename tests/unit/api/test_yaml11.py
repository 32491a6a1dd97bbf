"""The CRD and ``render`` are read by kubectl, whose YAML is 1.1: there ``y``/``n``/``on``/
``off`` are booleans. A required field named ``n`` written bare made the real API server
refuse the CRD (``cannot unmarshal bool into ... required of type string``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tensorgate.api.crd import Yaml11SafeDumper, render_crd

ROOT = Path(__file__).resolve().parents[3]


class Yaml11Loader(yaml.SafeLoader):
    """A loader that reads booleans as YAML 1.1 (and Go's yaml.v2) does."""


Yaml11Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(
        r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"
    ),
    list("yYnNtTfFoO"),
)
Yaml11Loader.construct_bool = lambda self, node: node.value.lower() in {"y", "yes", "true", "on"}  # type: ignore[method-assign]


def _strings_stay_strings(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        for key in a:
            _strings_stay_strings(a[key], b[key])
    elif isinstance(a, list):
        for x, y in zip(a, b, strict=True):
            _strings_stay_strings(x, y)
    else:
        assert type(a) is type(b) or not isinstance(a, str), (a, b)


def test_the_crd_reads_the_same_as_yaml_1_1() -> None:
    text = render_crd()
    _strings_stay_strings(yaml.safe_load(text), yaml.load(text, Loader=Yaml11Loader))


def test_yaml11_dumper_quotes_what_yaml_1_1_reads_as_booleans() -> None:
    doc = {"required": ["n", "b", "c", "y", "on", "name"]}
    text = yaml.dump(doc, Dumper=Yaml11SafeDumper)
    assert yaml.load(text, Loader=Yaml11Loader) == doc
    assert "- 'n'" in text and "- name" in text
