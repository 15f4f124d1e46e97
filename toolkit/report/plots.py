"""Plots for the HTML report, drawn with matplotlib's Agg backend and returned as base64 PNG."""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict
from typing import Any

from toolkit.errors import MissingDependencyError
from toolkit.report.data import Row
from toolkit.report.recommend import Recommendation, pareto_front


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            "plots need matplotlib", "pip install 'edgetk[report]' (or use --format md|csv|json)"
        ) from exc
    return plt


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _horizontal() -> dict[str, Any]:
    """Horizontal boxes: `orientation` since matplotlib 3.10, `vert=False` before (now deprecated)."""
    import matplotlib

    major, minor = (int(p) for p in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _grid(count: int) -> tuple[int, int]:
    columns = min(2, count)
    return math.ceil(count / columns), columns


def _by_device(rows: list[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row.status == "ok" and row.p50 is not None:
            grouped[row.device].append(row)
    return dict(sorted(grouped.items()))


def latency_distributions(rows: list[Row]) -> str | None:
    """Box plots of every configuration's latency samples, one panel per device."""
    grouped = {d: [r for r in rs if r.samples] for d, rs in _by_device(rows).items()}
    grouped = {d: rs for d, rs in grouped.items() if rs}
    if not grouped:
        return None
    plt = _pyplot()
    nrows, ncols = _grid(len(grouped))
    tallest = max(len(rs) for rs in grouped.values())
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, max(2.5, 0.45 * tallest + 1.2) * nrows), squeeze=False)
    for ax, (device, device_rows) in zip(axes.flat, grouped.items(), strict=False):
        device_rows = sorted(device_rows, key=lambda r: r.p50 or 0.0, reverse=True)
        # Whiskers at p1/p99 and no fliers: a few scheduler hiccups would otherwise squash the boxes.
        ax.boxplot([r.samples for r in device_rows], whis=(1, 99), showfliers=False, **_horizontal())
        ax.set_yticks(range(1, len(device_rows) + 1), [r.config_label for r in device_rows], fontsize=8)
        ax.set_title(device)
        ax.set_xlabel("latency (ms); whiskers p1-p99")
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(grouped) :]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)


def pareto(rows: list[Row], recommendations: dict[str, Recommendation]) -> str | None:
    """Size vs p50 per device, colour = accuracy drop; the Pareto front joined, the recommendation ringed."""
    grouped = _by_device(rows)
    if not grouped:
        return None
    plt = _pyplot()
    nrows, ncols = _grid(len(grouped))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.2 * nrows), squeeze=False)
    scatter = None
    top = max(1.0, *(r.accuracy_drop or 0.0 for rs in grouped.values() for r in rs))  # one colour scale for all panels
    for ax, (device, device_rows) in zip(axes.flat, grouped.items(), strict=False):
        scatter = _pareto_panel(ax, device, device_rows, recommendations.get(device), top)
    for ax in list(axes.flat)[len(grouped) :]:
        ax.axis("off")
    if scatter is not None:
        fig.colorbar(scatter, ax=axes.ravel().tolist(), label="accuracy drop (points)", shrink=0.8)
    return _png(fig)


def _pareto_panel(ax: Any, device: str, rows: list[Row], best: Recommendation | None, top: float) -> Any:
    sizes = [(r.size or 0) / 1024 for r in rows]
    latencies = [r.p50 for r in rows]
    drops = [r.accuracy_drop or 0.0 for r in rows]
    scatter = ax.scatter(sizes, latencies, c=drops, cmap="viridis_r", vmin=0, vmax=top, s=40, zorder=3)
    front = sorted(pareto_front(rows), key=lambda r: r.size or 0)
    ax.plot(
        [(r.size or 0) / 1024 for r in front],
        [r.p50 for r in front],
        "--",
        color="grey",
        lw=1,
        zorder=2,
        label="Pareto front",
    )
    for row, x, y in zip(rows, sizes, latencies, strict=True):
        threads = row.threads if row.threads is not None else "-"
        ax.annotate(
            f"{row.variant}/{row.delegate}/t{threads}", (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
    chosen = [
        r
        for r in rows
        if best
        and (r.variant, r.delegate, r.threads, r.model) == (best.variant, best.delegate, best.threads, best.model)
    ]
    if chosen:
        ax.scatter(
            [(chosen[0].size or 0) / 1024],
            [chosen[0].p50],
            s=260,
            facecolors="none",
            edgecolors="red",
            lw=2,
            zorder=4,
            label="recommended",
        )
    ax.set_title(device)
    ax.set_xlabel("model size (KiB)")
    ax.set_ylabel("p50 latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return scatter
