"""The gate's HTML report: what it contains, that it loads nothing, and how a real browser shows it.

The page is rendered by real headless Chromium (Debian ``chromium``, installed by
``make system-deps``): ``--dump-dom`` gives the DOM the browser built, whose text must hold the
report's numbers, and ``--screenshot`` a PNG that must be neither empty nor one colour. Chromium
runs with every host name resolving to nothing, so a page that fetched anything would not show it.
The end-to-end test runs ``tensorgate gate --json --report`` on real SavedModels.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from tensorgate.cli import app
from tensorgate.errors import ConfigError
from tensorgate.gate.html_report import MAX_HTML_BYTES, render_html, write_html
from tensorgate.gate.report import (
    CanaryReport,
    Check,
    ClassRecallChange,
    Decision,
    GateReport,
    SmokeReport,
)
from tests.helpers import require
from tests.models import DIGITS, build_family

# --- reports --------------------------------------------------------------------------------


def collapse_report() -> GateReport:
    """The story's model: every request answered, accuracy 94% -> 11%."""
    smoke = SmokeReport(
        (
            Check("signature", True, "serving_default: inputs pixels float32 [-1, 784]"),
            Check("batch-parity", True, "batch of 8 == 8 single requests (max diff 0)"),
            Check("finite", True, 'all outputs finite <b>ok</b> & "quoted"'),
        )
    )
    canary = CanaryReport(
        ran=True,
        samples=2000,
        stable_accuracy=0.9415,
        candidate_accuracy=0.1105,
        drop=0.831,
        upper_bound=0.8452,
        p_value=1.0,
        confidence=0.95,
        max_accuracy_drop=0.02,
        stable_only_correct=1700,
        candidate_only_correct=38,
        agreement=0.1215,
        recall_changes=(
            ClassRecallChange(3, 201, 0.9552, 0.0),
            ClassRecallChange(7, 188, 0.9149, 0.4947),
        ),
    )
    return GateReport(
        Decision.ROLLBACK,
        smoke,
        canary,
        ("accuracy drop upper bound 0.8452 > maxAccuracyDrop 0.02 (2000 samples)",),
        4.2,
    )


def smoke_failed_report() -> GateReport:
    smoke = SmokeReport((Check("signature", False, "input 'pixels' missing; served: 'inputs'"),))
    return GateReport(Decision.ROLLBACK, smoke, CanaryReport(ran=False), ("smoke failed",))


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def parse(page: str) -> _Text:
    parser = _Text()
    parser.feed(page)
    return parser


# --- the page itself (fast) ---------------------------------------------------------------------


def test_html_report_escapes_every_string() -> None:
    report = collapse_report().to_dict()
    report["reasons"] = ["<script>alert('x')</script>"]
    report["smoke"]["checks"][0]["name"] = '<img src=x onerror="alert(1)">'
    page = render_html(report, title="<i>t</i>")
    assert "<script" not in page and "<img" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;b&gt;ok&lt;/b&gt; &amp; &quot;quoted&quot;" in page


def test_html_report_loads_no_resource() -> None:
    page = render_html(collapse_report())
    tags = parse(page).tags
    names = {tag for tag, _ in tags}
    assert not names & {"script", "img", "link", "iframe", "object", "embed", "image", "use"}
    for tag, attrs in tags:
        for key in ("src", "href", "xlink:href", "srcset", "action", "poster"):
            assert key not in attrs, (tag, attrs)
    assert not re.search(r"url\(|@import|https?:|//[a-z]", page, re.IGNORECASE)


def test_html_report_contract_diff_rendered_when_present() -> None:
    report = collapse_report().to_dict()
    assert "Contract diff" not in render_html(report)
    report["contractDiff"] = {
        "inputs": [{"name": "pixels", "change": "renamed", "stable": "pixels", "candidate": "x"}],
        "outputs": [],
    }
    text = " ".join(parse(render_html(report)).parts)
    assert "Contract diff" in text and "renamed" in text and "pixels" in text


def test_html_report_huge_report_stays_bounded_and_says_what_it_cut() -> None:
    report = collapse_report().to_dict()
    report["smoke"]["checks"] = [
        {"name": f"check-{i}", "passed": i % 2 == 0, "message": "x" * 50_000} for i in range(5000)
    ]
    report["contractDiff"] = {f"k{i}": [{"a": "y" * 5000}] * 100 for i in range(200)}
    page = render_html(report)
    assert len(page.encode()) <= MAX_HTML_BYTES
    assert "more row(s) not shown" in page
    assert "check-0" in page and "check-4999" not in page


def test_html_report_smoke_failure_says_comparison_did_not_run() -> None:
    text = " ".join(parse(render_html(smoke_failed_report())).parts)
    assert "did not run" in text and "FAIL" in text and "served: 'inputs'" in text


def test_html_report_unwritable_path_is_a_config_error_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "r.html"
    with pytest.raises(ConfigError, match=r"--report .*missing-dir.*writable"):
        write_html(collapse_report(), target)


# --- real Chromium -------------------------------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    require(
        found is not None,
        "chromium (headless)",
        "run `make system-deps` (apt-get install chromium)",
    )
    assert found is not None
    return found


def run_chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",  # tests run as root here
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing resolves: a fetch would fail
        f"--user-data-dir={tmp / 'chromium-profile'}",
        *args,
        page.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def dom_text(page: Path, tmp: Path) -> str:
    dom = run_chromium(page, tmp, "--dump-dom").stdout
    assert "<svg" in dom and "bound-chart" in dom, dom[:500]
    return " ".join(" ".join(parse(dom).parts).split())


def png_pixels(path: Path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes) into an array of rows."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows = np.zeros((height, stride), dtype=np.int64)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(height):
        line = raw[y * (stride + 1) : (y + 1) * (stride + 1)]
        kind, cur = line[0], np.frombuffer(line[1:], dtype=np.uint8).astype(np.int64)
        if kind == 2:
            cur = (cur + prev) % 256
        elif kind in (1, 3, 4):
            out = cur.copy()
            for i in range(stride):
                a = out[i - bpp] if i >= bpp else 0
                b = prev[i]
                if kind == 1:
                    pred = a
                elif kind == 3:
                    pred = (a + b) // 2
                else:
                    c = prev[i - bpp] if i >= bpp else 0
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                out[i] = (out[i] + pred) % 256
            cur = out
        rows[y], prev = cur, cur
    return rows.reshape(height, width, bpp)[:, :, :3]


def screenshot_colours(page: Path, tmp: Path) -> int:
    shot = tmp / "report.png"
    run_chromium(page, tmp, f"--screenshot={shot}", "--window-size=900,1400")
    assert shot.is_file() and shot.stat().st_size > 0, "no screenshot written"
    pixels = png_pixels(shot)
    return len(np.unique(pixels.reshape(-1, 3), axis=0))


def test_html_report_in_chromium_shows_the_numbers(tmp_path: Path) -> None:
    report = collapse_report()
    page = tmp_path / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    text = dom_text(page, tmp_path)
    for number in ("0.9415", "0.1105", "0.8452", "0.0200", "2000", "1700", "38"):
        assert number in text, number
    for fragment in ("rollback", "signature", "batch-parity", "class 3", "94.15%", "11.05%"):
        assert fragment in text, fragment
    assert '<b>ok</b> & "quoted"' in text  # escaped in the file, shown as text
    # The page's own colours (red rollback badge, bars, text) and antialiasing: many colours.
    assert screenshot_colours(page, tmp_path) > 16


# --- end to end: tensorgate gate --report --------------------------------------------------------


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("report-models")
    x, y = DIGITS.samples(1000, seed=DIGITS.seed + 1000)
    versions = build_family(root / "digits", DIGITS, x, ["good", "collapse"])
    golden = root / "digits.npz"
    np.savez(golden, **{DIGITS.input_name: x, "labels": y})
    contract = root / "contract.yaml"
    contract.write_text(yaml.safe_dump(DIGITS.contract()))
    return {
        "stable": root / "digits" / str(versions["good"]),
        "candidate": root / "digits" / str(versions["collapse"]),
        "golden": golden,
        "contract": contract,
    }


@pytest.mark.tf
def test_cli_gate_report_written_and_rendered_by_chromium(
    tmp_path: Path, digits: dict[str, Path]
) -> None:
    page = tmp_path / "gate.html"
    result = CliRunner().invoke(
        app,
        [
            "gate",
            "--stable", str(digits["stable"]),
            "--candidate", str(digits["candidate"]),
            "--golden", str(digits["golden"]),
            "--contract", str(digits["contract"]),
            "--json",
            "--report", str(page),
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.stdout + result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    canary = body["canary"]
    assert page.is_file() and 0 < page.stat().st_size <= MAX_HTML_BYTES
    text = dom_text(page, tmp_path)
    for key in ("stableAccuracy", "candidateAccuracy", "upperBound", "maxAccuracyDrop"):
        assert f"{canary[key]:.4f}" in text, (key, canary[key])
    assert str(canary["samples"]) in text
    assert str(canary["discordant"]["stableOnlyCorrect"]) in text
    for check in body["smoke"]["checks"]:
        assert check["name"] in text, check["name"]
    assert "rollback" in text and "accuracy" in text
    assert screenshot_colours(page, tmp_path) > 16
