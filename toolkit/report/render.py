"""Report renderers: a registry of formats (html, md, csv, json) over one assembled report."""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import html
import io
import json
from collections.abc import Callable
from typing import Any

from toolkit.output import format_bytes, format_cell
from toolkit.report.data import Row
from toolkit.report.recommend import Recommendation, recommend

SUMMARY_COLUMNS = (
    ("device", "device"),
    ("model", "model"),
    ("variant", "variant"),
    ("delegate", "delegate"),
    ("threads", "threads"),
    ("p50", "p50 ms"),
    ("p90", "p90 ms"),
    ("init", "init ms"),
    ("peak_rss", "peak mem"),
    ("size", "size"),
    ("accuracy_drop", "acc. drop pt"),
    ("delegated_share", "delegated"),
)


@dataclasses.dataclass
class Report:
    """Everything a renderer needs."""

    rows: list[Row]
    recommendations: dict[str, Recommendation]
    accuracy_budget: float
    sources: list[str]
    generated_at: str = dataclasses.field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )

    @property
    def ok_rows(self) -> list[Row]:
        order = {"ok": 0}
        return sorted(
            (r for r in self.rows if r.status in order),
            key=lambda r: (r.device, r.model, r.variant, r.delegate, r.threads or 0),
        )

    @property
    def problem_rows(self) -> list[Row]:
        return sorted((r for r in self.rows if r.status != "ok"), key=lambda r: (r.device, r.model, r.variant))

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "failed": 0, "skipped": 0}
        for row in self.rows:
            out[row.status] = out.get(row.status, 0) + 1
        return out


def build_report(rows: list[Row], accuracy_budget: float, sources: list[str]) -> Report:
    return Report(rows, recommend(rows, accuracy_budget), accuracy_budget, sources)


def cell_text(row: Row, field: str) -> str:
    """A summary cell for people: numbers rounded, bytes humanized, shares as percentages."""
    value = getattr(row, field)
    if field in ("peak_rss", "size"):
        return format_bytes(value)
    if field == "delegated_share":
        return "-" if value is None else f"{100 * value:.0f}%"
    if field == "threads" and value is None:
        return "default"
    return format_cell(value)


# --- HTML ------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0} th,td{border:1px solid #ddd;padding:.3em .6em}
th{background:#f3f5f8;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#e9f7ec;font-weight:600} .muted{color:#666;font-size:.9em}
.badge{display:inline-block;padding:.1em .5em;border-radius:.6em;background:#eef;margin-right:.4em}
.failed{color:#a00} img{max-width:100%;border:1px solid #eee}
"""


def render_html(report: Report) -> str:
    """One self-contained page: tables, recommendations, plots embedded as base64 PNG."""
    from toolkit.report import plots

    counts = report.counts()
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>edgetk report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>edgetk report</h1>",
        f"<p class='muted'>Generated {html.escape(report.generated_at)} from {html.escape(', '.join(report.sources))}</p>",
        "<p>" + "".join(f"<span class='badge'>{k}: {v}</span>" for k, v in counts.items()) + "</p>",
        "<h2>Recommendations</h2>",
        _html_recommendations(report),
        "<h2>Summary</h2>",
        _html_summary(report),
    ]
    pareto_png = plots.pareto(report.rows, report.recommendations)
    if pareto_png:
        parts += ["<h2>Size, latency and accuracy</h2>", _img(pareto_png, "Pareto plot")]
    latency_png = plots.latency_distributions(report.rows)
    if latency_png:
        parts += ["<h2>Latency distributions</h2>", _img(latency_png, "latency distributions")]
    if report.problem_rows:
        parts += ["<h2>Failed and skipped jobs</h2>", _html_problems(report)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _img(data: str, alt: str) -> str:
    return f"<img alt='{alt}' src='data:image/png;base64,{data}'>"


def _html_recommendations(report: Report) -> str:
    if not report.recommendations:
        return "<p>No successful measurements to recommend from.</p>"
    head = "<tr><th>device</th><th>model</th><th>variant</th><th>delegate</th><th>threads</th><th>p50 ms</th><th>why</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(r.device)}</td><td>{html.escape(r.model)}</td><td>{html.escape(r.variant)}</td>"
        f"<td>{html.escape(r.delegate)}</td><td class='num'>{r.threads if r.threads is not None else 'default'}</td>"
        f"<td class='num'>{format_cell(r.p50_ms)}</td><td>{html.escape(r.reason)}</td></tr>"
        for r in report.recommendations.values()
    )
    rule = f"<p class='muted'>Rule: fastest p50 within a {report.accuracy_budget:g}-point accuracy budget; ties go to the smaller file.</p>"
    return f"<table>{head}{body}</table>{rule}"


def _is_recommended(row: Row, report: Report) -> bool:
    rec = report.recommendations.get(row.device)
    return rec is not None and (rec.model, rec.variant, rec.delegate, rec.threads) == (
        row.model,
        row.variant,
        row.delegate,
        row.threads,
    )


def _html_summary(report: Report) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(title)}</th>" for _, title in SUMMARY_COLUMNS) + "</tr>"
    lines = []
    for row in report.ok_rows:
        cells = "".join(
            f"<td class='{'num' if field not in ('device', 'model', 'variant', 'delegate') else ''}'>{html.escape(cell_text(row, field))}</td>"
            for field, _ in SUMMARY_COLUMNS
        )
        lines.append(f"<tr class='{'best' if _is_recommended(row, report) else ''}'>{cells}</tr>")
    return f"<table>{head}{''.join(lines)}</table>"


def _html_problems(report: Report) -> str:
    head = "<tr><th>device</th><th>model</th><th>variant</th><th>delegate</th><th>status</th><th>cause</th></tr>"
    body = "".join(
        f"<tr><td>{html.escape(r.device)}</td><td>{html.escape(r.model)}</td><td>{html.escape(r.variant)}</td>"
        f"<td>{html.escape(r.request)}</td><td class='failed'>{r.status}</td>"
        f"<td>{html.escape(f'{r.error_kind}: {r.error_message}')}</td></tr>"
        for r in report.problem_rows
    )
    return f"<table>{head}{body}</table>"


# --- Markdown, CSV, JSON -----------------------------------------------------------------------------


def render_markdown(report: Report) -> str:
    lines = ["# edgetk report", "", f"Generated {report.generated_at} from {', '.join(report.sources)}.", ""]
    lines += ["## Recommendations", ""]
    lines += ["| device | model | variant | delegate | threads | p50 ms | why |", "|---|---|---|---|---|---:|---|"]
    for r in report.recommendations.values():
        threads = r.threads if r.threads is not None else "default"
        lines.append(
            f"| {r.device} | {r.model} | {r.variant} | {r.delegate} | {threads} | {format_cell(r.p50_ms)} | {r.reason} |"
        )
    lines += ["", "## Summary", ""]
    lines.append("| " + " | ".join(title for _, title in SUMMARY_COLUMNS) + " |")
    lines.append(
        "|"
        + "|".join("---" if f in ("device", "model", "variant", "delegate") else "---:" for f, _ in SUMMARY_COLUMNS)
        + "|"
    )
    for row in report.ok_rows:
        mark = "**" if _is_recommended(row, report) else ""
        lines.append("| " + " | ".join(f"{mark}{cell_text(row, f)}{mark}" for f, _ in SUMMARY_COLUMNS) + " |")
    if report.problem_rows:
        lines += [
            "",
            "## Failed and skipped jobs",
            "",
            "| device | model | variant | status | cause |",
            "|---|---|---|---|---|",
        ]
        for r in report.problem_rows:
            lines.append(f"| {r.device} | {r.model} | {r.variant} | {r.status} | {r.error_kind}: {r.error_message} |")
    return "\n".join(lines) + "\n"


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    fields = [f.name for f in dataclasses.fields(Row) if f.name != "samples"] + ["recommended"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in report.ok_rows + report.problem_rows:
        writer.writerow({**row.to_dict(), "recommended": _is_recommended(row, report)})
    return buffer.getvalue()


def render_json(report: Report) -> str:
    document = {
        "schema": "edgetk.report/1",
        "generated_at": report.generated_at,
        "sources": report.sources,
        "counts": report.counts(),
        "accuracy_budget_points": report.accuracy_budget,
        "recommendations": {k: v.to_dict() for k, v in report.recommendations.items()},
        "rows": [
            {**r.to_dict(), "recommended": _is_recommended(r, report)} for r in report.ok_rows + report.problem_rows
        ],
    }
    return json.dumps(document, indent=2, default=str) + "\n"


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    render: Callable[[Report], str]


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("html", ".html", render_html),
        Format("md", ".md", render_markdown),
        Format("csv", ".csv", render_csv),
        Format("json", ".json", render_json),
    )
}


def format_for_path(path: str, default: str = "html") -> str:
    """The format a file name implies (report.md -> md), else the default."""
    for fmt in FORMATS.values():
        if path.endswith(fmt.suffix):
            return fmt.name
    return default


def summary_table_rows(report: Report) -> list[list[Any]]:
    """The summary as plain rows for a terminal table."""
    return [[cell_text(row, field) for field, _ in SUMMARY_COLUMNS] for row in report.ok_rows]
