"""The gate's result as one self-contained HTML page (``tensorgate gate --report FILE.html``).

The page is built from the gate's JSON form (:meth:`GateReport.to_dict`, the same object
``--json`` prints), so fields other parts of the gate add later (a contract diff, slices) are
rendered when present. It loads nothing: the CSS is inline, the charts are inline SVG, there are
no scripts, images, fonts or links to fetch. Every string from the report is escaped with
:func:`html.escape`. The page is size-bounded: long texts are cut, long tables keep their first
rows and say how many were left out, and the whole page stays under :data:`MAX_HTML_BYTES`.

Sections: the decision and why; stable vs candidate accuracy and the drop's one-sided upper
confidence bound against the margin (``maxAccuracyDrop``), drawn; the smoke checks; the contract
diff (when the report has one); per-class (and per-slice) bars; the paired confusion changes
(which samples each model alone got right).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorgate.errors import ConfigError
from tensorgate.gate.report import GateReport

__all__ = ["MAX_HTML_BYTES", "render_html", "write_html"]

MAX_HTML_BYTES = 512 * 1024
"""Upper bound of a page (half a ConfigMap's 1 MiB, so one report fits one object)."""


@dataclass(frozen=True)
class _Limits:
    rows: int = 50
    text: int = 600


_ROOMY, _TIGHT = _Limits(), _Limits(rows=10, text=160)
PASS_COLOUR, FAIL_COLOUR, STABLE_COLOUR, CANDIDATE_COLOUR = (
    "#1a7f37",
    "#cf222e",
    "#57606a",
    "#0969da",
)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:62rem;padding:0 1rem;color:#1f2328;background:#fff}
h1{font-size:1.5rem;margin-bottom:.25rem}h2{font-size:1.15rem;margin-top:2rem;
border-bottom:1px solid #d0d7de;padding-bottom:.25rem}
table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.2rem .7rem;border-radius:1rem;color:#fff;font-weight:600}
.promote,.pass{background:#1a7f37}.rollback,.fail{background:#cf222e}
.pass,.fail{color:#fff;border-radius:.3rem;padding:0 .4rem;font-size:.85rem}
.muted{color:#57606a}svg{display:block;margin:.5rem 0;max-width:100%}
svg text{font-size:12px;fill:#1f2328}code{background:#f6f8fa;padding:0 .2rem}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cut(text: object, limits: _Limits) -> str:
    s = str(text)
    return s if len(s) <= limits.text else s[: limits.text - 1] + "\u2026"


def _num(value: object, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return "\u2014" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def _sci(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else _num(value)


def _pct(value: object) -> str:
    return f"{value:.2%}" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def _mark(passed: object) -> str:
    ok = passed is True
    return f'<span class="{"pass" if ok else "fail"}">{"pass" if ok else "FAIL"}</span>'


def _rows_note(total: int, shown: int) -> str:
    more = total - shown
    return f'<p class="muted">{more} more row(s) not shown.</p>' if more > 0 else ""


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- sections -------------------------------------------------------------------------------


def _header(report: Mapping[str, Any], title: str, limits: _Limits) -> str:
    decision = str(report.get("decision", "unknown"))
    css = "promote" if decision == "promote" else "rollback"
    caught = ", ".join(str(c) for c in report.get("caughtBy") or []) or "nothing"
    reasons = list(report.get("reasons") or [])
    items = "".join(f"<li>{_e(_cut(r, limits))}</li>" for r in reasons[: limits.rows])
    return (
        f"<h1>{_e(_cut(title, limits))}</h1>"
        f'<p>decision: <span class="badge {css}" id="decision">{_e(decision)}</span>'
        f' &nbsp; caught by: <strong id="caught-by">{_e(caught)}</strong></p>'
        + (f"<ul>{items}</ul>{_rows_note(len(reasons), limits.rows)}" if reasons else "")
    )


def _accuracy_bars(canary: Mapping[str, Any]) -> str:
    """Stable and candidate accuracy as two horizontal bars on a 0..100% axis."""
    width, left, bar_w = 640, 110, 460
    parts = []
    for i, (label, key, colour) in enumerate(
        (
            ("stable", "stableAccuracy", STABLE_COLOUR),
            ("candidate", "candidateAccuracy", CANDIDATE_COLOUR),
        )
    ):
        value = canary.get(key)
        frac = min(max(float(value), 0.0), 1.0) if isinstance(value, int | float) else 0.0
        y = 10 + i * 30
        parts.append(
            f'<text x="0" y="{y + 15}">{label}</text>'
            f'<rect x="{left}" y="{y}" width="{bar_w}" height="20" fill="#eaeef2"/>'
            f'<rect x="{left}" y="{y}" width="{frac * bar_w:.1f}" height="20" fill="{colour}"/>'
            f'<text x="{left + bar_w + 6}" y="{y + 15}">{_pct(value)}</text>'
        )
    return (
        f'<svg id="accuracy-chart" width="{width}" height="75" viewBox="0 0 {width} 75" '
        f'role="img" aria-label="stable vs candidate accuracy">{"".join(parts)}</svg>'
    )


def _bound_chart(canary: Mapping[str, Any]) -> str:
    """The drop (stable - candidate) with its one-sided upper bound, against the margin."""
    drop, bound, margin = (
        canary.get("drop"),
        canary.get("upperBound"),
        canary.get("maxAccuracyDrop"),
    )
    if not all(isinstance(v, int | float) for v in (drop, bound, margin)):
        return '<p class="muted">no confidence bound in this report</p>'
    d, b, m = float(drop), float(bound), float(margin)  # type: ignore[arg-type]
    lo = min(d, -m, 0.0) - 0.25 * max(m, 1e-3)
    hi = max(b, m, d) + 0.25 * max(m, 1e-3)
    width, x0, plot_w = 640, 20, 600

    def x(v: float) -> float:
        return x0 + (v - lo) / (hi - lo) * plot_w

    def label(v: float, y: int, text: str) -> str:
        at = x(v)
        anchor = "start" if at < x0 + 90 else "end" if at > x0 + plot_w - 90 else "middle"
        return f'<text x="{at:.1f}" y="{y}" text-anchor="{anchor}">{text}</text>'

    ok = b <= m
    colour = PASS_COLOUR if ok else FAIL_COLOUR
    verdict = "within the margin" if ok else "exceeds the margin"
    marks = (
        f'<line x1="{x0}" y1="60" x2="{x0 + plot_w}" y2="60" stroke="#8c959f"/>'
        f'<line x1="{x(0):.1f}" y1="30" x2="{x(0):.1f}" y2="80" stroke="#8c959f"/>'
        f'<rect x="{x0}" y="52" width="{x(b) - x0:.1f}" height="16" '
        f'fill="{colour}" fill-opacity="0.35"/>'
        f'<circle cx="{x(d):.1f}" cy="60" r="5" fill="{colour}"/>'
        f'<line x1="{x(b):.1f}" y1="44" x2="{x(b):.1f}" y2="76" stroke="{colour}" stroke-width="3"/>'
        f'<line x1="{x(m):.1f}" y1="20" x2="{x(m):.1f}" y2="85" stroke="{FAIL_COLOUR}" '
        f'stroke-dasharray="5,4" stroke-width="2"/>'
    )
    labels = (
        label(0.0, 98, "0")
        + label(b, 38, f"upper bound {b:.4f}")
        + label(m, 14, f"maxAccuracyDrop {m:.4f}")
        + label(d, 112, f"drop {d:+.4f}")
    )
    return (
        f'<svg id="bound-chart" width="{width}" height="120" viewBox="0 0 {width} 120" role="img" '
        f'aria-label="accuracy drop upper bound {b:.4f} vs margin {m:.4f}">{marks}{labels}</svg>'
        f"<p>The drop's upper bound {verdict}: <strong>{b:.4f}</strong> "
        f"{'&le;' if ok else '&gt;'} {m:.4f}.</p>"
    )


def _accuracy(canary: Mapping[str, Any], limits: _Limits) -> str:
    if not canary.get("ran"):
        return "<h2>Accuracy</h2><p>The golden-set comparison did not run (smoke failed).</p>"
    confidence = canary.get("confidence")
    rows = [
        ("samples", _num(canary.get("samples"))),
        (
            "stable accuracy",
            f"{_num(canary.get('stableAccuracy'))} ({_pct(canary.get('stableAccuracy'))})",
        ),
        (
            "candidate accuracy",
            f"{_num(canary.get('candidateAccuracy'))} ({_pct(canary.get('candidateAccuracy'))})",
        ),
        ("drop (stable - candidate)", _num(canary.get("drop"))),
        (
            f"upper bound ({_pct(confidence) or '?'} one-sided, {_e(canary.get('method', ''))})",
            _num(canary.get("upperBound")),
        ),
        ("maxAccuracyDrop (margin)", _num(canary.get("maxAccuracyDrop"))),
        ("p-value (H0: drop >= margin)", _sci(canary.get("pValue"))),
        ("prediction agreement", _num(canary.get("agreement"))),
    ]
    checks = list(canary.get("checks") or [])
    extra = ""
    if checks:
        extra = "<h3>Comparison checks</h3>" + _checks(checks, limits)
    return (
        "<h2>Accuracy: stable vs candidate</h2>"
        + _accuracy_bars(canary)
        + _bound_chart(canary)
        + _table(("metric", "value"), rows, {1})
        + extra
    )


def _checks(checks: Sequence[Any], limits: _Limits) -> str:
    rows = [
        (
            _e(_cut(c.get("name", ""), limits)),
            _mark(c.get("passed")),
            _e(_cut(c.get("message", ""), limits)),
        )
        for c in checks[: limits.rows]
        if isinstance(c, Mapping)
    ]
    return _table(("check", "result", "details"), rows, set()) + _rows_note(
        len(checks), limits.rows
    )


def _smoke(smoke: Mapping[str, Any], limits: _Limits) -> str:
    checks = list(smoke.get("checks") or [])
    head = f"<h2>Smoke checks {_mark(smoke.get('passed'))}</h2>"
    return head + (_checks(checks, limits) if checks else "<p>No smoke checks ran.</p>")


def _json_cell(value: Any, limits: _Limits) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return _e(_cut(value if not isinstance(value, float) else f"{value:.6g}", limits))
    return f"<code>{_e(_cut(json.dumps(value, sort_keys=True, default=str), limits))}</code>"


def _generic(value: Any, limits: _Limits) -> str:
    """A table for a list of objects, a key/value table for an object (nested: JSON)."""
    if isinstance(value, list):
        items = [v for v in value if isinstance(v, Mapping)]
        if not items:
            cells = [(_json_cell(v, limits),) for v in value[: limits.rows]]
            return _table(("value",), cells, set()) + _rows_note(len(value), limits.rows)
        keys: list[str] = []
        for item in items[: limits.rows]:
            keys += [str(k) for k in item if str(k) not in keys]
        keys = keys[:12]
        rows = [[_json_cell(item.get(k), limits) for k in keys] for item in items[: limits.rows]]
        return _table(keys, rows, set()) + _rows_note(len(items), limits.rows)
    if isinstance(value, Mapping):
        entries = list(value.items())
        pairs = [
            (_e(_cut(k, limits)), _generic_inline(v, limits)) for k, v in entries[: limits.rows]
        ]
        return _table(("field", "value"), pairs, set()) + _rows_note(len(entries), limits.rows)
    return f"<p>{_json_cell(value, limits)}</p>"


def _generic_inline(value: Any, limits: _Limits) -> str:
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return _generic(value, limits)
    return _json_cell(value, limits)


def _find(report: Mapping[str, Any], key: str) -> Any:
    for where in (report, report.get("smoke") or {}, report.get("canary") or {}):
        if isinstance(where, Mapping) and where.get(key) not in (None, [], {}):
            return where[key]
    return None


def _contract_diff(report: Mapping[str, Any], limits: _Limits) -> str:
    diff = _find(report, "contractDiff")
    if diff is None:
        return ""
    return "<h2>Contract diff (candidate vs stable signature)</h2>" + _generic(diff, limits)


def _pair_bars(rows: Sequence[tuple[str, object, object, str]], svg_id: str, label: str) -> str:
    """Per group: a stable and a candidate bar (0..100%), the text of both values."""
    left, bar_w, width = 120, 380, 760
    height = 14 + 34 * len(rows)
    parts = [
        f'<rect x="{left}" y="2" width="10" height="10" fill="{STABLE_COLOUR}"/>'
        f'<text x="{left + 14}" y="11">stable</text>'
        f'<rect x="{left + 80}" y="2" width="10" height="10" fill="{CANDIDATE_COLOUR}"/>'
        f'<text x="{left + 94}" y="11">candidate</text>'
    ]
    for i, (name, stable, candidate, note) in enumerate(rows):
        y = 18 + 34 * i
        parts.append(f'<text x="0" y="{y + 18}">{_e(name)}</text>')
        for j, (value, colour) in enumerate(
            ((stable, STABLE_COLOUR), (candidate, CANDIDATE_COLOUR))
        ):
            frac = min(max(float(value), 0.0), 1.0) if isinstance(value, int | float) else 0.0
            parts.append(
                f'<rect x="{left}" y="{y + j * 14}" width="{frac * bar_w:.1f}" height="12" '
                f'fill="{colour}"/>'
            )
        parts.append(
            f'<text x="{left + bar_w + 8}" y="{y + 18}">{_pct(stable)} \u2192 {_pct(candidate)}'
            f"{_e(note)}</text>"
        )
    return (
        f'<svg id="{svg_id}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_e(label)}">{"".join(parts)}</svg>'
    )


def _per_class(canary: Mapping[str, Any], limits: _Limits) -> str:
    out = ""
    changes = [c for c in canary.get("classRecallChanges") or [] if isinstance(c, Mapping)]
    if canary.get("ran"):
        out += "<h2>Per-class recall</h2>"
        if changes:
            shown = changes[: limits.rows]
            bars = [
                (
                    f"class {_cut(c.get('label'), limits)}",
                    c.get("stableRecall"),
                    c.get("candidateRecall"),
                    f" (support {c.get('support')})",
                )
                for c in shown
            ]
            out += (
                f"<p>{len(changes)} class(es) whose recall fell by more than the margin.</p>"
                + _pair_bars(bars, "class-bars", "per-class recall, stable vs candidate")
                + _rows_note(len(changes), limits.rows)
            )
        else:
            out += "<p>No class lost more recall than the margin.</p>"
    slices = _find(canary, "slices")
    if isinstance(slices, list) and slices:
        items = [s for s in slices if isinstance(s, Mapping)]
        bars = [
            (
                _cut(s.get("slice", s.get("name", s.get("id", "?"))), limits),
                s.get("stableAccuracy"),
                s.get("candidateAccuracy"),
                "",
            )
            for s in items[: limits.rows]
            if "stableAccuracy" in s or "candidateAccuracy" in s
        ]
        out += "<h2>Per-slice accuracy</h2>"
        if bars:
            out += _pair_bars(bars, "slice-bars", "per-slice accuracy, stable vs candidate")
        out += _generic(items, limits)
    return out


def _confusion(canary: Mapping[str, Any]) -> str:
    """The paired 2x2 table: which golden-set samples each model got right."""
    if not canary.get("ran"):
        return ""
    disc = canary.get("discordant") or {}
    n, sa = canary.get("samples"), canary.get("stableAccuracy")
    s_only, c_only = disc.get("stableOnlyCorrect"), disc.get("candidateOnlyCorrect")
    if not all(isinstance(v, int | float) for v in (n, sa, s_only, c_only)):
        return ""
    n_i, s_i, c_i = int(n), int(s_only), int(c_only)  # type: ignore[arg-type]
    both = round(float(sa) * n_i) - s_i  # type: ignore[arg-type]
    neither = n_i - both - s_i - c_i
    rows = [
        ("stable right", str(both), str(s_i)),
        ("stable wrong", str(c_i), str(neither)),
    ]
    return (
        "<h2>Confusion changes (paired)</h2>"
        f"<p>Of {n_i} golden-set samples, <strong>{s_i}</strong> were right only under the stable "
        f"model and <strong>{c_i}</strong> only under the candidate (the discordant pairs the "
        "test is computed from).</p>"
        + _table(("", "candidate right", "candidate wrong"), rows, {1, 2})
    )


def _page(report: Mapping[str, Any], title: str, limits: _Limits) -> str:
    canary = report.get("canary") or {}
    smoke = report.get("smoke") or {}
    elapsed = report.get("elapsedSeconds")
    body = (
        _header(report, title, limits)
        + _accuracy(canary, limits)
        + _smoke(smoke, limits)
        + _contract_diff(report, limits)
        + _per_class(canary, limits)
        + _confusion(canary)
        + '<p class="muted">TensorGate gate report'
        + (f"; gated in {_num(elapsed, 1)} s" if isinstance(elapsed, int | float) else "")
        + ". This page loads nothing from the network.</p>"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(_cut(title, limits))}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def render_html(
    report: GateReport | Mapping[str, Any], *, title: str = "TensorGate gate report"
) -> str:
    """The self-contained page for a gate result (a GateReport or its ``to_dict`` JSON)."""
    data = report.to_dict() if isinstance(report, GateReport) else report
    page = _page(data, title, _ROOMY)
    if len(page.encode()) > MAX_HTML_BYTES:
        page = _page(data, title, _TIGHT)
    if len(page.encode()) > MAX_HTML_BYTES:  # pragma: no cover - bounded by the tight limits
        raise ValueError(f"gate report page {len(page.encode())} B > {MAX_HTML_BYTES} B")
    return page


def write_html(
    report: GateReport | Mapping[str, Any],
    path: str | Path,
    *,
    title: str = "TensorGate gate report",
) -> Path:
    """Write :func:`render_html`'s page to ``path`` (UTF-8); returns the path."""
    out = Path(path)
    try:
        out.write_text(render_html(report, title=title), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--report {out}: {exc.strerror or exc} (name a writable file)") from exc
    return out
