"""Output parity: the chosen delegate's outputs against the plain CPU reference's."""

from __future__ import annotations

from typing import Any

import numpy as np


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def _as_named(outputs: Any) -> list:
    if isinstance(outputs, dict):
        return list(outputs.items())
    return [(f"output_{i}", value) for i, value in enumerate(outputs)]


def compare_outputs(candidate: Any, reference: Any) -> dict:
    """toolkit.results.Parity: per-output max |Δ| and cosine, overall the worst of each."""
    rows = []
    for (name, got), (_, want) in zip(_as_named(candidate), _as_named(reference), strict=False):
        a = np.asarray(got, dtype=np.float64).ravel()
        b = np.asarray(want, dtype=np.float64).ravel()
        if a.shape != b.shape:
            rows.append({"name": name, "max_abs_error": None, "cosine": None, "note": "shape mismatch"})
            continue
        finite = np.isfinite(a).all() and np.isfinite(b).all()
        max_abs = float(np.max(np.abs(a - b))) if a.size and finite else (0.0 if finite else None)
        rows.append(
            {
                "name": name,
                "shape": list(np.shape(got)),
                "max_abs_error": max_abs,
                "cosine": _cosine(a, b) if finite else None,
            }
        )
    return {
        "reference": "cpu",
        "max_abs_error": _worst(rows, "max_abs_error", max),
        "cosine": _worst(rows, "cosine", min),
        "outputs": rows,
    }


def _worst(rows: list, key: str, pick) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return pick(values) if values else None
