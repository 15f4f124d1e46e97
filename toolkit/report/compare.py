"""Compare two result sets configuration by configuration and find significant p50 regressions.

A configuration (device, model, variant, delegate request, threads) regressed when its p50 grew
by more than the allowed fraction AND a one-sided Mann–Whitney U test on the stored latency
samples says the new samples are larger with p < alpha. Both conditions: a big but noisy change,
or a tiny but consistent one, does not fail CI.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from toolkit.report.data import Row
from toolkit.report.stats import mann_whitney_greater

DEFAULT_ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Comparison:
    key: tuple[str, ...]
    baseline_p50: float | None
    new_p50: float | None
    change: float | None  # (new - baseline) / baseline
    p_value: float | None
    method: str
    verdict: str  # regressed | slower | faster | improved | same | missing | new | no-samples

    @property
    def label(self) -> str:
        device, model, variant, request, threads = self.key
        return f"{device} {model}/{variant} {request} t={threads if threads != 'None' else 'default'}"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["key"] = dict(zip(("device", "model", "variant", "delegate", "threads"), self.key, strict=True))
        return out


def parse_threshold(text: str) -> float:
    """'5%' -> 0.05, '0.05' -> 0.05."""
    text = text.strip()
    try:
        return float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        from toolkit.errors import ConfigError

        raise ConfigError(f"--max-regression {text!r} is not a number or percentage", "use e.g. 5% or 0.05") from None


def _p50(row: Row) -> float | None:
    return float(np.median(row.samples)) if row.samples else row.p50


def compare_rows(
    baseline: list[Row], new: list[Row], max_regression: float, alpha: float = DEFAULT_ALPHA
) -> list[Comparison]:
    """One comparison per configuration present in either set (successful measurements only)."""
    base = {r.key: r for r in baseline if r.status == "ok"}
    fresh = {r.key: r for r in new if r.status == "ok"}
    out = []
    for key in sorted(set(base) | set(fresh)):
        out.append(_compare_one(key, base.get(key), fresh.get(key), max_regression, alpha))
    return out


def _compare_one(key: tuple[str, ...], base: Row | None, new: Row | None, threshold: float, alpha: float) -> Comparison:
    if base is None or new is None:
        verdict = "missing" if new is None else "new"
        return Comparison(key, _p50(base) if base else None, _p50(new) if new else None, None, None, "-", verdict)
    base_p50, new_p50 = _p50(base), _p50(new)
    change = (new_p50 - base_p50) / base_p50 if base_p50 and new_p50 is not None else None
    if not (base.samples and new.samples):
        return Comparison(key, base_p50, new_p50, change, None, "-", "no-samples")
    slower = mann_whitney_greater(base.samples, new.samples)
    faster = mann_whitney_greater(new.samples, base.samples)
    verdict = _verdict(change, slower.p_value, faster.p_value, threshold, alpha)
    p_value = slower.p_value if (change or 0) >= 0 else faster.p_value
    return Comparison(key, base_p50, new_p50, change, p_value, slower.method, verdict)


def _verdict(change: float | None, p_slower: float, p_faster: float, threshold: float, alpha: float) -> str:
    if change is None:
        return "same"
    if change > threshold:
        return "regressed" if p_slower < alpha else "slower"
    if change < -threshold:
        return "improved" if p_faster < alpha else "faster"
    return "same"


def regressions(comparisons: list[Comparison]) -> list[Comparison]:
    return [c for c in comparisons if c.verdict == "regressed"]
