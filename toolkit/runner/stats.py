"""Latency statistics: percentiles, moments, and a distribution-free CI for the median."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# Above this many samples the binomial's normal approximation is exact enough for CI ranks.
_EXACT_BINOMIAL_LIMIT = 1000
_Z95 = 1.959963984540054


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of sorted samples bounding the median with `confidence`; None if n is too small.

    The interval [x_(j), x_(n-j+1)] covers the median with probability 1 - 2·P(B ≤ j-1), B ~ Bin(n, ½),
    whatever the distribution of the samples.
    """
    alpha_half = (1.0 - confidence) / 2.0
    if n > _EXACT_BINOMIAL_LIMIT:
        j = math.floor((n - _Z95 * math.sqrt(n)) / 2.0)
        return (j - 1, n - j) if j >= 1 else None
    j = _largest_rank_within(n, alpha_half)
    return (j - 1, n - j) if j >= 1 else None


def _largest_rank_within(n: int, alpha_half: float) -> int:
    """Largest j with P(Bin(n, ½) ≤ j-1) ≤ alpha_half; 0 when none.

    Adaptive mode asks at every check, so the fast floating-point sum answers, and the exact
    integer sum only where a partial sum lands too close to the limit for floats to decide.
    """
    j = _largest_rank_by_floats(n, alpha_half)
    return j if j is not None else _largest_rank_exact(n, alpha_half)


# Floating-point partial sums here are good to ~1e-12 relative; closer than this, ask integers.
_FLOAT_GUARD = 1e-9


def _largest_rank_by_floats(n: int, alpha_half: float) -> int | None:
    log_term = -n * math.log(2.0)  # log(comb(n, 0) / 2**n); no underflow for n <= 1000
    cumulative = 0.0
    j = 0
    for k in range(n // 2 + 1):
        cumulative += math.exp(log_term)
        if abs(cumulative - alpha_half) <= _FLOAT_GUARD * alpha_half:
            return None
        if cumulative > alpha_half:
            break
        j = k + 1
        log_term += math.log((n - k) / (k + 1))
    return j


def _largest_rank_exact(n: int, alpha_half: float) -> int:
    """The same rank in exact integer arithmetic (slow: big integers of n bits)."""
    total = 1 << n
    limit = alpha_half * total
    cumulative = 0
    term = 1  # comb(n, k)
    j = 0
    for k in range(n // 2 + 1):
        cumulative += term
        if cumulative > limit:
            break
        j = k + 1
        term = term * (n - k) // (k + 1)
    return j


def median_ci_rel_of(values: np.ndarray, confidence: float = 0.95) -> float | None:
    """median_ci_rel of unsorted samples: only the order statistics it needs are put in place
    (a partition is O(n); adaptive mode asks at every check)."""
    n = len(values)
    ranks = median_ci_ranks(n, confidence)
    if ranks is None:
        return None
    mid = n // 2
    return _ci_rel(np.partition(values, sorted({*ranks, mid, max(mid - 1, 0)})), ranks)


def median_ci_rel(sorted_samples: Sequence[float], confidence: float = 0.95) -> float | None:
    """Half-width of the median's CI divided by the median; None when it cannot be computed yet."""
    ranks = median_ci_ranks(len(sorted_samples), confidence)
    return None if ranks is None else _ci_rel(sorted_samples, ranks)


def _ci_rel(ordered: Sequence[float], ranks: tuple[int, int]) -> float | None:
    """The relative CI half-width from samples whose ranks `ranks` and median ranks are in place."""
    lo, hi = ranks
    median = _median_of_sorted(ordered)
    if median <= 0:
        return None
    return (float(ordered[hi]) - float(ordered[lo])) / 2.0 / median


def _median_of_sorted(values: Sequence[float]) -> float:
    n = len(values)
    mid = n // 2
    return float(values[mid]) if n % 2 else (float(values[mid - 1]) + float(values[mid])) / 2.0


def percentiles(values: np.ndarray, qs: Sequence[float]) -> list[float]:
    """numpy.percentile's default (linear) method, without it: in numpy 2 its first call imports
    numpy.ma, ~7 ms of a micro-model's whole profile. Same interpolation formula, same results."""
    n = len(values)
    positions = [q / 100.0 * (n - 1) for q in qs]
    lows = [math.floor(p) for p in positions]
    kth = sorted({i for lo in lows for i in (lo, min(lo + 1, n - 1))})
    part = np.partition(values, kth)
    out = []
    for position, lo in zip(positions, lows):  # noqa: B905 (Python 3.9)
        a, b, t = float(part[lo]), float(part[min(lo + 1, n - 1)]), position - lo
        out.append(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)
    return out


def summarize(samples_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99 (linear interpolation), mean, population std (as benchmark_model), min and max."""
    if not len(samples_ms):
        return dict.fromkeys(("p50", "p90", "p99", "mean", "std", "min", "max"))
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = percentiles(values, (50, 90, 99))
    return {
        "p50": p50,
        "p90": p90,
        "p99": p99,
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }
