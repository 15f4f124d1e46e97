"""`auto` delegate selection against an exhaustive sweep, side by side on this machine.

For each model: an exhaustive sweep measures every configuration (delegate x thread count) the way
a profile run does (warm-up, then at least `--measure-s` of timed runs, interleaved in rounds so
drift hits every configuration alike) and `select_delegate(..., "auto")` picks one. Targets:

- the configuration auto picks has a sweep p50 within 5% of the sweep's best p50;
- auto's wall time (probe child, accuracy checks, race) is at most 10x one measurement run
  (the warm-up plus timed runs of one configuration in the sweep).

Run: .venv/bin/python -m bench.bench_select [--model M.tflite ...] [--threads 1,2] [--measure-s 1.0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PICK_TARGET = 1.05
COST_TARGET = 10.0


def _default_models() -> list[Path]:
    """MobileNetV2 (alpha 0.35, 96x96) float and int8, built once by the test fixtures' builder."""
    sys.path.insert(0, str(REPO))
    from tests.fixtures.tflite_models import ensure_models

    paths = ensure_models(REPO / ".pytest_cache" / "d" / "edgetk_tflite_models", "mobilenet")
    return [paths["mobilenet_v2"], paths["mobilenet_v2_int8"]]


def sweep(model: Path, configs: list[tuple[str, int]], measure_s: float, runtime: str | None) -> dict[str, Any]:
    """p50 per configuration from interleaved rounds; also the wall time one configuration costs."""
    from delegates import open_model

    runners = {}
    samples: dict[str, list[float]] = {}
    cost: dict[str, float] = {}
    for delegate, threads in configs:
        key = f"{delegate}/{threads}t"
        start = time.perf_counter()
        runner = open_model(model, delegate, threads=threads, runtime=runtime)
        runner.set_inputs(runner.random_inputs(0))
        warm_until = time.perf_counter() + 0.5
        while time.perf_counter() < warm_until:  # benchmark_model's warmup_min_secs
            runner.interpreter.invoke()
        runners[key], samples[key], cost[key] = runner, [], time.perf_counter() - start
    rounds = 4
    for _ in range(rounds):
        for key, runner in runners.items():
            start = time.perf_counter()
            deadline = start + measure_s / rounds
            invoke = runner.interpreter.invoke
            while time.perf_counter() < deadline or len(samples[key]) < 3:
                t0 = time.perf_counter_ns()
                invoke()
                samples[key].append((time.perf_counter_ns() - t0) / 1e6)
            cost[key] += time.perf_counter() - start
    return {
        "p50_ms": {key: float(np.median(values)) for key, values in samples.items()},
        "runs": {key: len(values) for key, values in samples.items()},
        "measure_cost_s": cost,
    }


def auto(model: Path, threads: list[int], runtime: str | None) -> tuple[Any, float]:
    from delegates import select_delegate

    start = time.perf_counter()
    report = select_delegate(model, "auto", thread_counts=threads, runtime=runtime)
    return report, time.perf_counter() - start


def bench_model(model: Path, threads: list[int], measure_s: float, runtime: str | None) -> dict[str, Any]:
    report, selection_s = auto(model, threads, runtime)
    viable = [a.details["key"] for a in report.attempts if a.outcome in ("applied", "partial", "slower")]
    configs = [(key.split("/")[0], int(key.split("/")[1][:-1])) for key in dict.fromkeys(viable)]
    swept = sweep(model, configs, measure_s, runtime)
    best = min(swept["p50_ms"], key=swept["p50_ms"].get)
    chosen = report.choice.key
    one_measurement = float(np.mean(list(swept["measure_cost_s"].values())))
    return {
        "model": model.name,
        "chosen": chosen,
        "chosen_p50_ms": swept["p50_ms"][chosen],
        "best": best,
        "best_p50_ms": swept["p50_ms"][best],
        "pick_ratio": swept["p50_ms"][chosen] / swept["p50_ms"][best],
        "selection_s": selection_s,
        "one_measurement_s": one_measurement,
        "cost_ratio": selection_s / one_measurement,
        "auto_measurements_ms": report.measurements_ms,
        "sweep_p50_ms": swept["p50_ms"],
        "sweep_runs": swept["runs"],
        "rejected": {a.details["key"]: a.outcome for a in report.attempts if a.details["key"] not in swept["p50_ms"]},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench_select", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", type=Path, help="a .tflite (repeatable); default: MobileNetV2 fp32 + int8"
    )
    parser.add_argument("--threads", default=None, help="thread counts, e.g. 1,2 (default: 1, half and all cores)")
    parser.add_argument("--measure-s", type=float, default=1.0, help="timed seconds per configuration in the sweep")
    parser.add_argument("--runtime", default=None)
    args = parser.parse_args(argv or [])
    from delegates.selection import default_thread_counts

    threads = [int(t) for t in args.threads.split(",")] if args.threads else default_thread_counts()
    models = args.model or _default_models()
    results = [bench_model(m, threads, args.measure_s, args.runtime) for m in models]
    _print(results, threads)
    passed = all(r["pick_ratio"] <= PICK_TARGET and r["cost_ratio"] <= COST_TARGET for r in results)
    return {"threads": threads, "cpus": os.cpu_count(), "results": results, "pass": passed}


def _print(results: list[dict[str, Any]], threads: list[int]) -> None:
    print(f"auto selection vs exhaustive sweep (threads {threads}; delegates available here)")
    header = f"{'model':<24} {'measure':<28} {'value':>10} {'vs':>10} {'ratio':>7} {'target':>7}  verdict"
    print(header)
    print("-" * len(header))
    for r in results:
        pick_ok = r["pick_ratio"] <= PICK_TARGET
        cost_ok = r["cost_ratio"] <= COST_TARGET
        print(
            f"{r['model']:<24} {'p50 auto=' + r['chosen']:<28} {r['chosen_p50_ms']:>8.3f}ms "
            f"{r['best_p50_ms']:>8.3f}ms {r['pick_ratio']:>7.3f} {'<=1.05':>7}  {'PASS' if pick_ok else 'FAIL'}"
            f"  (best {r['best']})"
        )
        print(
            f"{'':<24} {'selection cost':<28} {r['selection_s']:>9.2f}s {r['one_measurement_s']:>9.2f}s "
            f"{r['cost_ratio']:>7.2f} {'<=10':>7}  {'PASS' if cost_ok else 'FAIL'}"
        )
        sweep = ", ".join(f"{k} {v:.3f}" for k, v in sorted(r["sweep_p50_ms"].items(), key=lambda kv: kv[1]))
        print(f"{'':<24} sweep p50 ms: {sweep}")
        if r["rejected"]:
            print(f"{'':<24} not viable: {r['rejected']}")


if __name__ == "__main__":
    outcome = main(sys.argv[1:])
    raise SystemExit(0 if outcome["pass"] else 1)
