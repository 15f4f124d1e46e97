"""The measurement loop, with benchmark_model's semantics (STYLE.md #9).

Warmup: at least `warmup_runs` runs and at least `warmup_min_s` seconds, never past `max_s`.
Timed runs: at least `num_runs` runs and at least `min_s` seconds, never past `max_s`; or, in
adaptive mode, until the median's 95% confidence interval is narrow enough (or `max_s`).
Each sample is one `invoke()` timed with `time.perf_counter_ns`; nothing else sits inside it.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from toolkit.runner.stats import median_ci_rel_of

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000.0

# Adaptive mode looks at the CI from the first sample count that has one at 95% (then it is the
# range of the 6 samples: 1 - 2/64 = 97% coverage), so a steady slow model stops after 6 runs.
ADAPTIVE_MIN_RUNS = 6
# ...and then each time the sample count has grown by this fraction, so sorting stays O(n log n) overall.
ADAPTIVE_CHECK_GROWTH = 0.1


@dataclass(frozen=True)
class LoopSettings:
    """The subset of toolkit.results.BenchmarkSettings the loop needs (plain, for the device)."""

    warmup_runs: int = 1
    warmup_min_s: float = 0.5
    num_runs: int = 50
    min_s: float = 1.0
    max_s: float = 150.0
    run_delay_s: float = 0.0
    adaptive: bool = False
    target_ci: float = 0.01

    @classmethod
    def from_dict(cls, data: dict) -> LoopSettings:
        """Take the known keys of a BenchmarkSettings dict; ignore the rest (cooldown is not the loop's)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data and data[k] is not None}
        return cls(**known)


def _new_samples() -> array:
    # 8 bytes a sample instead of a Python int each: what the runner keeps while it measures
    # counts in the peak memory it reports.
    return array("q")


@dataclass
class Series:
    """Samples of one phase, in nanoseconds, and why the phase ended."""

    samples_ns: array = field(default_factory=_new_samples)
    stop_reason: str | None = None
    ci95_rel: float | None = None
    wall_ns: int = 0

    def samples_ms_array(self) -> np.ndarray:
        """Samples in milliseconds at nanosecond resolution."""
        return np.round(np.frombuffer(self.samples_ns, dtype=np.int64) / NS_PER_MS, 6)

    def samples_ms(self) -> list:
        """Samples in milliseconds at nanosecond resolution (plain floats, for JSON)."""
        return self.samples_ms_array().tolist()

    def mean_ns(self) -> float:
        return float(np.frombuffer(self.samples_ns, dtype=np.int64).mean()) if len(self.samples_ns) else 0.0


def ci_of(samples: array) -> float | None:
    """The median's relative 95% CI half-width of the samples so far (no Python object per sample)."""
    return median_ci_rel_of(np.frombuffer(samples, dtype=np.int64))


class BudgetRule:
    """benchmark_model's rule: enough runs and enough time, or out of time."""

    def __init__(self, runs: int, min_s: float, max_s: float) -> None:
        self.runs = max(int(runs), 0)
        self.min_ns = int(min_s * NS_PER_S)
        self.max_ns = int(max_s * NS_PER_S)

    def stop_reason(self, samples: list, elapsed_ns: int) -> str | None:
        if elapsed_ns >= self.max_ns:
            return "max_seconds"
        count_met = len(samples) >= self.runs
        time_met = elapsed_ns >= self.min_ns
        if count_met and time_met:
            # Name the condition that was met last: that is what decided the run length.
            return "min_seconds" if len(samples) > self.runs else "count"
        return None


class AdaptiveRule:
    """Stop once the median's 95% CI half-width is within `target` of the median, or at max_s."""

    def __init__(self, target: float, max_s: float) -> None:
        self.target = float(target)
        self.max_ns = int(max_s * NS_PER_S)
        self.next_check = ADAPTIVE_MIN_RUNS
        self.ci95_rel: float | None = None

    def stop_reason(self, samples: list, elapsed_ns: int) -> str | None:
        if elapsed_ns >= self.max_ns:
            self.ci95_rel = ci_of(samples)
            return "max_seconds"
        if len(samples) < self.next_check:
            return None
        self.next_check = len(samples) + max(1, int(len(samples) * ADAPTIVE_CHECK_GROWTH))
        self.ci95_rel = ci_of(samples)
        if self.ci95_rel is not None and self.ci95_rel <= self.target:
            return "converged"
        return None


def run_phase(invoke: Callable[[], object], rule, run_delay_s: float = 0.0) -> Series:
    """Call `invoke` until `rule` says stop; time each call alone."""
    clock = time.perf_counter_ns
    series = Series()
    samples = series.samples_ns
    append = samples.append
    start = clock()
    while True:
        t0 = clock()
        invoke()
        t1 = clock()
        append(t1 - t0)
        reason = rule.stop_reason(samples, t1 - start)
        if reason is not None:
            break
        if run_delay_s > 0:
            time.sleep(run_delay_s)
    series.stop_reason = reason
    series.wall_ns = clock() - start
    series.ci95_rel = getattr(rule, "ci95_rel", None)
    return series


def time_once(invoke: Callable[[], object]) -> int:
    """Nanoseconds of one call (the first inference)."""
    t0 = time.perf_counter_ns()
    invoke()
    return time.perf_counter_ns() - t0


def warmup(invoke: Callable[[], object], settings: LoopSettings, first_ns: int) -> Series:
    """Warmup phase; the first inference (already timed) counts as its first run, as in benchmark_model."""
    remaining_runs = max(settings.warmup_runs - 1, 0)
    remaining_s = max(settings.warmup_min_s - first_ns / NS_PER_S, 0.0)
    series = Series(stop_reason="count")
    series.samples_ns.append(first_ns)
    if remaining_runs == 0 and remaining_s == 0:
        return series
    rest = run_phase(invoke, BudgetRule(remaining_runs, remaining_s, settings.max_s), settings.run_delay_s)
    series.samples_ns.extend(rest.samples_ns)
    series.stop_reason = rest.stop_reason
    return series


def timed_runs(invoke: Callable[[], object], settings: LoopSettings) -> Series:
    """Timed phase with the budget rule or, in adaptive mode, the CI rule."""
    if settings.adaptive:
        rule = AdaptiveRule(settings.target_ci, settings.max_s)
    else:
        rule = BudgetRule(settings.num_runs, settings.min_s, settings.max_s)
    series = run_phase(invoke, rule, settings.run_delay_s)
    if series.ci95_rel is None:
        series.ci95_rel = ci_of(series.samples_ns)
    return series
