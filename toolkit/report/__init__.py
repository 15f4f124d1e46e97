"""Reports and regression gates built from stored results.

    from toolkit.report import write_report
    write_report(["farm.results.db"], "report.html")          # or .md / .csv / .json

Plots need matplotlib (imported only when an HTML page is rendered).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from toolkit.report.data import Row, load_documents, rows_from_documents
from toolkit.report.recommend import DEFAULT_ACCURACY_BUDGET, Recommendation, recommendations_yaml
from toolkit.report.render import FORMATS, Report, build_report

__all__ = [
    "DEFAULT_ACCURACY_BUDGET",
    "FORMATS",
    "Recommendation",
    "Report",
    "Row",
    "load_report",
    "load_rows",
    "write_report",
]


def load_rows(paths: Sequence[str | Path]) -> list[Row]:
    """Rows of every result in the given stores / JSON files / folders (newest per configuration)."""
    return rows_from_documents(load_documents(paths))


def load_report(paths: Sequence[str | Path], accuracy_budget: float = DEFAULT_ACCURACY_BUDGET) -> Report:
    return build_report(load_rows(paths), accuracy_budget, [str(p) for p in paths])


def write_report(
    paths: Sequence[str | Path],
    output: str | Path,
    fmt: str = "html",
    accuracy_budget: float = DEFAULT_ACCURACY_BUDGET,
    recommendations_path: str | Path | None = None,
) -> Report:
    """Render a report to `output` and the per-device recommendations to a YAML file beside it."""
    report = load_report(paths, accuracy_budget)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(output, FORMATS[fmt].render(report))
    yaml_path = Path(recommendations_path) if recommendations_path else default_recommendations_path(output)
    _write_atomically(yaml_path, recommendations_yaml(report.recommendations, accuracy_budget))
    return report


def default_recommendations_path(output: Path) -> Path:
    return output.with_name(output.name.rsplit(".", 1)[0] + ".recommendations.yaml")


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
