"""The deployable choice per device: variant + delegate + threads.

The rule: among the configurations measured successfully on a device, keep those whose accuracy
drop against the source model is within the budget (default 1 point of task accuracy on the
labelled evaluation set, or of top-1 agreement with the source model when there are no labels;
configurations whose model has no conversion report count as within the budget and say so), then
take the lowest p50 latency; ties (within 1%) go to the smaller model file, then lower peak memory.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from toolkit.report.data import Row

DEFAULT_ACCURACY_BUDGET = 1.0  # points
TIE_TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class Recommendation:
    device: str
    model: str
    variant: str
    delegate: str
    threads: int | None
    p50_ms: float
    size_bytes: int | None
    accuracy_drop: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def recommend(rows: list[Row], accuracy_budget: float = DEFAULT_ACCURACY_BUDGET) -> dict[str, Recommendation]:
    """One recommendation per device that has at least one eligible successful measurement."""
    by_device: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row.status == "ok" and row.p50 is not None:
            by_device[row.device].append(row)
    out = {}
    for device, candidates in sorted(by_device.items()):
        choice = _best(candidates, accuracy_budget)
        if choice is not None:
            out[device] = choice
    return out


def within_budget(row: Row, budget: float) -> bool:
    return row.accuracy_drop is None or row.accuracy_drop <= budget


def _best(rows: list[Row], budget: float) -> Recommendation | None:
    eligible = [r for r in rows if within_budget(r, budget)]
    if not eligible:
        return None
    fastest = min(r.p50 for r in eligible if r.p50 is not None)
    near = [r for r in eligible if r.p50 is not None and r.p50 <= fastest * (1 + TIE_TOLERANCE)]
    best = min(near, key=lambda r: (r.size if r.size is not None else float("inf"), r.peak_rss or 0, r.p50))
    return Recommendation(
        device=best.device,
        model=best.model,
        variant=best.variant,
        delegate=best.delegate,
        threads=best.threads,
        p50_ms=float(best.p50 or 0.0),
        size_bytes=best.size,
        accuracy_drop=best.accuracy_drop,
        reason=_reason(best, eligible, rows, budget),
    )


def _reason(best: Row, eligible: list[Row], rows: list[Row], budget: float) -> str:
    accuracy = (
        f"accuracy drop {best.accuracy_drop:.2f} pt ({best.accuracy_metric}) within the {budget:g} pt budget"
        if best.accuracy_drop is not None
        else "no conversion report, accuracy not checked"
    )
    excluded = len(rows) - len(eligible)
    tail = f"; {excluded} configuration(s) over the accuracy budget" if excluded else ""
    return f"fastest p50 of {len(eligible)} eligible configuration(s); {accuracy}{tail}"


def pareto_front(rows: list[Row]) -> list[Row]:
    """Rows not dominated in (p50, size, accuracy drop): nothing else is at least as good in all three."""

    def metrics(row: Row) -> tuple[float, float, float]:
        return (row.p50 or float("inf"), float(row.size or 0), row.accuracy_drop or 0.0)

    front = []
    for row in rows:
        mine = metrics(row)
        dominated = any(
            all(o <= m for o, m in zip(metrics(other), mine, strict=True)) and metrics(other) != mine
            for other in rows
            if other is not row
        )
        if not dominated:
            front.append(row)
    return front


def recommendations_yaml(recommendations: dict[str, Recommendation], budget: float) -> str:
    """The recommendations as a YAML document (for deployment scripts)."""
    import yaml

    document = {
        "rule": f"fastest p50 within {budget:g} pt accuracy budget; ties by smaller file",
        "accuracy_budget_points": budget,
        "devices": {name: rec.to_dict() for name, rec in recommendations.items()},
    }
    return yaml.safe_dump(document, sort_keys=False)
