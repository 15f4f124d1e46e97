"""Load result documents (a store file, JSON files or folders of them) and flatten them into rows."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError
from toolkit.results import validate_result

SQLITE_MAGIC = b"SQLite format 3\x00"
SKIPPED_KIND = "skipped"


@dataclasses.dataclass
class Row:
    """One measurement, flattened for tables and plots (times in ms, sizes in bytes)."""

    device: str
    model: str
    variant: str
    delegate: str  # what was applied ("cpu" when nothing was)
    request: str  # what was asked for
    threads: int | None
    status: str  # ok | failed | skipped
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    mean: float | None = None
    init: float | None = None
    first: float | None = None
    peak_rss: int | None = None
    size: int | None = None
    delegated_share: float | None = None
    accuracy: float | None = None  # task accuracy (or top-1 agreement) of this variant, in %
    accuracy_drop: float | None = None  # points lost against the source model
    accuracy_metric: str | None = None
    samples: list[float] = dataclasses.field(default_factory=list)
    error_kind: str | None = None
    error_message: str | None = None
    job_id: str | None = None
    model_path: str | None = None
    created_at: str = ""

    @property
    def config_label(self) -> str:
        threads = self.threads if self.threads is not None else "default"
        return f"{self.model}/{self.variant} {self.delegate} t={threads}"

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """Identifies the same configuration across runs (used by compare and to de-duplicate)."""
        return (self.device, self.model, self.variant, self.request, str(self.threads))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("samples")
        return out


def load_documents(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every result document in the given stores, JSON files and folders (validated)."""
    documents: list[dict[str, Any]] = []
    for path in map(Path, paths):
        documents += _documents_from(path)
    return documents


def _documents_from(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        found: list[dict[str, Any]] = []
        for child in sorted(path.glob("*.json")):
            if not child.name.endswith(".report.json"):
                found += _documents_from(child)
        return found
    if not path.exists():
        raise BadInputError(
            f"{path}: no such file", "pass a results store (.db), result JSON files or a folder of them"
        )
    with path.open("rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        from toolkit.store import open_store

        with open_store(path, must_exist=True) as store:
            return list(store.documents())
    return _documents_from_json(path)


def _documents_from_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(
            f"{path}: neither a results store nor JSON ({exc})", "pass a .db or result .json files"
        ) from exc
    items = data.get("results", data) if isinstance(data, dict) else data
    items = items if isinstance(items, list) else [items]
    out = []
    for item in items:
        try:
            out.append(validate_result(item).to_dict())
        except BadInputError:
            raise
        except Exception as exc:
            raise BadInputError(f"{path}: not an edgetk result document ({str(exc).splitlines()[0]})") from exc
    return out


def rows_from_documents(documents: Iterable[dict[str, Any]]) -> list[Row]:
    """Flatten documents into rows, keeping only the newest per configuration (device, model, variant, request, threads)."""
    newest: dict[tuple[str, ...], Row] = {}
    for row in sorted((_row(doc) for doc in documents), key=lambda r: r.created_at):
        newest[row.key] = row
    return list(newest.values())


def _row(doc: dict[str, Any]) -> Row:
    model, device, config, timings = doc["model"], doc["device"], doc["config"], doc.get("timings") or {}
    job = doc.get("job") or {}
    error = doc.get("error") or {}
    delegation = doc.get("delegation") or {}
    status = "skipped" if error.get("kind") == SKIPPED_KIND else doc.get("status", "ok")
    row = Row(
        device=device["name"],
        model=job.get("model") or model["name"].split(".")[0],
        variant=model.get("variant") or job.get("variant") or "-",
        delegate=config.get("delegate") or "-",
        request=",".join(config.get("delegate_request") or []) or "default",
        threads=config.get("threads"),
        status=status,
        p50=timings.get("p50"),
        p90=timings.get("p90"),
        p99=timings.get("p99"),
        mean=timings.get("mean"),
        init=timings.get("init"),
        first=timings.get("first"),
        peak_rss=(doc.get("memory") or {}).get("peak_rss_bytes"),
        size=model.get("size_bytes"),
        delegated_share=_share(delegation),
        samples=list(timings.get("samples") or []),
        error_kind=error.get("kind"),
        error_message=error.get("message"),
        job_id=job.get("job_id"),
        model_path=model.get("path"),
        created_at=doc.get("created_at", ""),
    )
    _attach_accuracy(row)
    return row


def _share(delegation: dict[str, Any]) -> float | None:
    done, total = delegation.get("delegated_nodes"), delegation.get("total_nodes")
    return done / total if done is not None and total else None


def _attach_accuracy(row: Row) -> None:
    if not row.model_path:
        return
    summary = accuracy_summary(row.model_path)
    if summary:
        row.accuracy, row.accuracy_drop, row.accuracy_metric = summary


def conversion_report_path(model_path: str) -> Path:
    """The converter's `<stem>.<variant>.report.json` beside `<stem>.<variant>.tflite`."""
    path = Path(model_path)
    return path.with_name(path.name[: -len(".tflite")] + ".report.json") if path.name.endswith(".tflite") else path


@lru_cache(maxsize=512)
def accuracy_summary(model_path: str) -> tuple[float, float, str] | None:
    """(accuracy %, drop in points vs the source model, metric name) from the conversion report, if any."""
    path = conversion_report_path(model_path)
    if path == Path(model_path) or not path.exists():
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for extract in ACCURACY_EXTRACTORS:
        found = extract(report)
        if found is not None:
            return found
    return None


def _task_accuracy(report: dict[str, Any]) -> tuple[float, float, str] | None:
    """Labelled evaluation: the variant's accuracy and the source model's on the same samples."""
    task = report.get("accuracy") or {}
    if not isinstance(task, dict):
        return None
    variant, source = task.get("variant"), task.get("source")
    if isinstance(variant, (int, float)) and isinstance(source, (int, float)):
        drop = task.get("delta_points")
        return (
            100.0 * variant,
            float(drop) if isinstance(drop, (int, float)) else 100.0 * (source - variant),
            "task accuracy",
        )
    return None


def _top1_agreement(report: dict[str, Any]) -> tuple[float, float, str] | None:
    """Without labels: how often the variant's top-1 matches the source model's."""
    for output in report.get("outputs") or []:
        agreement = output.get("top1_agreement") if isinstance(output, dict) else None
        if isinstance(agreement, (int, float)):
            return 100.0 * agreement, 100.0 * (1.0 - agreement), "top-1 agreement"
    return None


# Tried in order: the first that finds its figures in a conversion report wins.
ACCURACY_EXTRACTORS = (_task_accuracy, _top1_agreement)
