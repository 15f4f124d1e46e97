"""Statistics for reports and regression gates, in numpy only (scipy is not a core dependency)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

# Below this many samples per side (and without ties) the exact distribution of U is cheap.
EXACT_MAX_N = 20


@dataclasses.dataclass(frozen=True)
class MannWhitney:
    """Result of a one-sided Mann–Whitney U test that `new` tends to be larger than `baseline`."""

    u: float  # U statistic of `new`
    p_value: float
    method: str  # exact | normal
    n_baseline: int
    n_new: int


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.repeat(mean_rank, counts)
    return ranks


def mann_whitney_greater(baseline: Sequence[float], new: Sequence[float]) -> MannWhitney:
    """Test H1: samples of `new` are stochastically larger (slower) than those of `baseline`."""
    x = np.asarray(baseline, dtype=float)
    y = np.asarray(new, dtype=float)
    n_x, n_y = len(x), len(y)
    if n_x == 0 or n_y == 0:
        return MannWhitney(float("nan"), float("nan"), "none", n_x, n_y)
    combined = np.concatenate([x, y])
    ranks = average_ranks(combined)
    u_new = float(ranks[n_x:].sum() - n_y * (n_y + 1) / 2.0)
    has_ties = len(np.unique(combined)) < len(combined)
    if not has_ties and max(n_x, n_y) <= EXACT_MAX_N:
        return MannWhitney(u_new, _exact_p_greater(u_new, n_x, n_y), "exact", n_x, n_y)
    return MannWhitney(u_new, _normal_p_greater(u_new, combined, n_x, n_y), "normal", n_x, n_y)


def _normal_p_greater(u: float, combined: np.ndarray, n_x: int, n_y: int) -> float:
    n = n_x + n_y
    _, counts = np.unique(combined, return_counts=True)
    tie_term = float(((counts**3) - counts).sum()) / (n * (n - 1)) if n > 1 else 0.0
    variance = n_x * n_y / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:  # every value identical: no evidence either way
        return 1.0
    mean = n_x * n_y / 2.0
    z = (u - mean - 0.5) / math.sqrt(variance)  # continuity correction towards the null
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _exact_p_greater(u: float, n_x: int, n_y: int) -> float:
    counts = _u_distribution(n_y, n_x)
    at_least = math.ceil(u - 1e-9)
    return float(sum(counts[at_least:]) / sum(counts))


@lru_cache(maxsize=256)
def _u_distribution(m: int, n: int) -> tuple[int, ...]:
    """Number of arrangements giving each U of the first sample (sizes m, n), for U = 0..m*n."""
    # f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u): the largest value belongs to one sample or the other.
    if m == 0 or n == 0:
        return (1,)
    with_first = _u_distribution(m - 1, n)
    with_second = _u_distribution(m, n - 1)
    out = [0] * (m * n + 1)
    for u, count in enumerate(with_first):
        out[u + n] += count
    for u, count in enumerate(with_second):
        out[u] += count
    return tuple(out)


def percentile(samples: Sequence[float], q: float) -> float | None:
    if len(samples) == 0:
        return None
    return float(np.percentile(np.asarray(samples, dtype=float), q))
