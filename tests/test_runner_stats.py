"""The profiler's statistics and measurement loop: benchmark_model semantics, adaptive stopping."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest

from toolkit.runner.stats import median_ci_ranks, median_ci_rel, summarize
from toolkit.runner.timing import (
    AdaptiveRule,
    BudgetRule,
    LoopSettings,
    run_phase,
    time_once,
    timed_runs,
    warmup,
)


def _binomial_cdf(k: int, n: int) -> Fraction:
    return Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n)


def _exact_rank(n: int) -> int:
    """Largest 1-based j with 2·P(B <= j-1) <= 5%, by a running sum of exact binomial terms."""
    total, cumulative, j = 2**n, 0, 0
    for k in range(n // 2 + 1):
        cumulative += math.comb(n, k)
        if 2 * cumulative * 100 > 5 * total:
            return j
        j = k + 1
    return j


@pytest.mark.parametrize("n", [*range(1, 80), 150, 500, 999, 1000])
def test_median_ci_ranks_are_the_widest_exact_binomial_interval(n):
    ranks = median_ci_ranks(n)
    # Brute force: the largest j (1-based) with coverage 1 - 2 P(B <= j-1) >= 95%.
    valid = [j for j in range(1, n // 2 + 1) if 2 * _binomial_cdf(j - 1, n) <= Fraction(5, 100)]
    if not valid:
        assert ranks is None
        return
    j = max(valid)
    assert ranks == (j - 1, n - j)


def test_large_n_uses_a_normal_approximation_close_to_the_exact_ranks():
    for n in (1001, 1500, 4000):
        lo, hi = median_ci_ranks(n)
        assert abs(lo - (_exact_rank(n) - 1)) <= 1
        assert hi == n - 1 - lo


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    true_median = np.log(2.0)  # exponential(1): skewed, like latencies
    hits = 0
    trials = 2000
    for _ in range(trials):
        x = np.sort(rng.exponential(1.0, size=31))
        lo, hi = median_ci_ranks(31)
        hits += x[lo] <= true_median <= x[hi]
    assert 0.94 <= hits / trials <= 0.995


def test_median_ci_rel_is_half_width_over_median():
    values = sorted([10.0] * 20 + [9.0, 11.0])
    lo, hi = median_ci_ranks(len(values))
    assert median_ci_rel(values) == pytest.approx((values[hi] - values[lo]) / 2 / 10.0)
    assert median_ci_rel([1.0, 2.0, 3.0]) is None


def test_summarize_matches_numpy_with_population_std():
    samples = list(np.random.default_rng(1).gamma(2.0, 1.5, size=257))
    s = summarize(samples)
    assert s["p50"] == pytest.approx(np.percentile(samples, 50))
    assert s["p90"] == pytest.approx(np.percentile(samples, 90))
    assert s["p99"] == pytest.approx(np.percentile(samples, 99))
    assert s["std"] == pytest.approx(np.std(samples, ddof=0))
    assert (s["min"], s["max"]) == (min(samples), max(samples))
    assert summarize([])["p50"] is None


class Counter:
    def __init__(self, sleep_s: float = 0.0) -> None:
        self.calls = 0
        self.sleep_s = sleep_s

    def __call__(self) -> None:
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)


def test_budget_rule_stops_at_the_run_count_when_time_is_already_met():
    invoke = Counter()
    series = run_phase(invoke, BudgetRule(25, 0.0, 60.0))
    assert invoke.calls == len(series.samples_ns) == 25
    assert series.stop_reason == "count"


def test_budget_rule_keeps_running_until_min_seconds():
    invoke = Counter(0.005)
    series = run_phase(invoke, BudgetRule(2, 0.1, 60.0))
    assert len(series.samples_ns) > 2
    assert series.stop_reason == "min_seconds"
    assert series.wall_ns >= 0.1e9


def test_budget_rule_never_runs_past_max_seconds():
    series = run_phase(Counter(0.002), BudgetRule(10**9, 0.0, 0.1))
    assert series.stop_reason == "max_seconds"
    assert series.wall_ns < 10e9


def test_delay_between_runs_is_outside_the_samples():
    series = run_phase(Counter(), BudgetRule(5, 0.0, 60.0), run_delay_s=0.02)
    assert len(series.samples_ns) == 5
    assert series.wall_ns >= 4 * 0.02e9
    assert max(series.samples_ns) < 0.02e9  # the sleep is not inside any sample


def test_warmup_counts_the_first_inference_like_benchmark_model():
    invoke = Counter()
    first = time_once(invoke)
    series = warmup(invoke, LoopSettings(warmup_runs=3, warmup_min_s=0.0), first)
    assert series.samples_ns[0] == first
    assert len(series.samples_ns) == 3
    assert invoke.calls == 3


def test_warmup_with_one_run_and_no_minimum_time_is_just_the_first_inference():
    invoke = Counter()
    first = time_once(invoke)
    series = warmup(invoke, LoopSettings(warmup_runs=1, warmup_min_s=0.0), first)
    assert list(series.samples_ns) == [first]
    assert invoke.calls == 1


def test_adaptive_mode_converges_on_a_steady_workload():
    settings = LoopSettings(adaptive=True, target_ci=0.05, max_s=30.0, num_runs=10**6, min_s=100.0)
    series = timed_runs(Counter(0.002), settings)
    assert series.stop_reason == "converged"
    assert series.ci95_rel is not None
    assert series.ci95_rel <= 0.05
    # It ignored num_runs and min_s: far fewer runs than a budget run would have needed.
    assert len(series.samples_ns) < 10**6


def test_adaptive_mode_stops_at_the_first_sample_count_that_has_a_ci():
    """Six identical samples already bound the median within any target: no run more is needed."""
    from array import array

    rule = AdaptiveRule(target=0.01, max_s=60.0)
    samples = array("q")
    reasons = []
    for _ in range(8):
        samples.append(1_000_000)
        reasons.append(rule.stop_reason(samples, elapsed_ns=len(samples) * 1_000_000))
    assert reasons[:6] == [None] * 5 + ["converged"]
    assert rule.ci95_rel == 0.0


def test_adaptive_mode_gives_up_at_max_seconds_and_says_so():
    rule = AdaptiveRule(target=1e-12, max_s=0.2)
    series = run_phase(lambda: time.sleep(np.random.default_rng().uniform(0, 0.002)), rule)
    assert series.stop_reason == "max_seconds"
    assert series.ci95_rel is not None
    assert series.ci95_rel > 1e-12


def test_budget_mode_reports_the_ci_it_reached():
    series = timed_runs(Counter(), LoopSettings(num_runs=40, min_s=0.0))
    assert series.stop_reason == "count"
    assert series.ci95_rel is not None


def test_loop_settings_take_a_benchmark_settings_dict():
    from toolkit.results import BenchmarkSettings

    data = BenchmarkSettings(num_runs=7, adaptive=True, cooldown_below_c=50).model_dump()
    settings = LoopSettings.from_dict(data)
    assert settings.num_runs == 7
    assert settings.adaptive


def test_float_ranks_agree_with_exact_integers_up_to_the_normal_approximation():
    from toolkit.runner.stats import _largest_rank_by_floats, _largest_rank_exact

    for n in range(1, 1001):
        fast = _largest_rank_by_floats(n, 0.025)
        assert fast is None or fast == _largest_rank_exact(n, 0.025), n


@pytest.mark.parametrize("n", [6, 7, 50, 999, 1000, 1001, 4000])
def test_ci_of_unsorted_samples_is_the_ci_of_the_sorted_ones(n):
    from toolkit.runner.stats import median_ci_rel_of

    values = np.random.default_rng(n).lognormal(size=n)
    assert median_ci_rel_of(values.copy()) == median_ci_rel(np.sort(values))
