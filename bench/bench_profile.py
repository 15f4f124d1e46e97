"""The profiler against the plainest ways to time a TFLite model, side by side on this machine.

For each model (squeezenet from onnx's light models and the shipped digits example, fp32 and int8,
converted once with `converters.convert_model` and cached):

1. overhead: edgetk's p50 (`profile_model` on the local device: runner.pyz in a child process)
   against a bare `interpreter.invoke()` loop in one process, same runtime, XNNPACK and threads.
   Target: edgetk / bare <= 1.02.
2. the LiteRT script: ai-edge-litert's own Python benchmark script
   (`ai_edge_litert/tools/benchmark_litert_model.py`, shipped from ai-edge-litert 2.3, same
   threads), both run by the same interpreter and runtime version. The script does not time what
   edgetk times: it times `CompiledModel.run_by_name`, whose Python binding costs ~1.4 µs more per
   call than `Interpreter.invoke()` — nothing on squeezenet, ~20% of the digits model's 7 µs. So:
   - "p50 vs LiteRT script (raw)": edgetk's p50 against the script's, as they come (info).
   - "p50 like for like vs LiteRT script": edgetk's p50 plus that per-call API difference, measured
     in the same round by one process that alternates blocks of `invoke()` and `run_by_name` calls
     on the same model, against the script's p50. This is the script's figure if it timed
     `invoke()`, i.e. whether the two tools measure the same thing. Target: 1 ± 0.05.
   - "(info: script vs bare run_by_name)": the script against that loop's run_by_name p50 — the
     script adds nothing over its API.
   Then time to an answer: edgetk's adaptive mode (one call, stops when the median's 95% CI is
   within 1%) against the script re-run with 50, 100, 200, … runs until its own samples give the
   same CI — what a user without adaptive mode has to do. Target: edgetk's wall time < the
   script's.
3. ssh: the same profile through a private sshd on 127.0.0.1 (real ssh/scp) against local.
   Target: p50 within 5%, and the ssh result complete (timings, memory, delegation, selection,
   parity, fingerprint all present).
4. fixed costs: where a profile's time goes that is not warmup or timed runs — the runner's own
   phase breakdown (`phases_ms` of the device document), `device_time_s`, what reaching the device
   added to it (the whole call minus `device_time_s`) and the fixed cost (the whole call minus
   warmup and timed runs), medians over several adaptive profiles (information, no target).

Each comparison alternates its two sides for several rounds (swapping who goes first), computes
the ratio of each round's pair, and passes or fails on the median of those ratios; the spread
column shows the lowest and highest per-round ratio, so a shared machine's drift is visible
instead of deciding. Wall-time comparisons are cheap and get more rounds. The ssh per-command
overhead is bench_transport's figure (`python -m bench.bench_transport`).

ai-edge-litert 2.3 cannot sit in the project venv (onnx2tf pins 2.1.0); part 2 uses a separate
interpreter that has it, given with --litert-python or found at
.pytest_cache/d/edgetk_bench_profile/litert-venv/bin/python. Without one, part 2 is reported as
SKIP with the two commands that create it.

    .venv/bin/python -m bench.bench_profile [--models squeezenet-fp32,digits-int8] [--threads 1]
        [--seconds 2] [--rounds 5] [--wall-rounds 9] [--litert-python PATH] [--no-ssh] [--no-litert]
        [--no-phases]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".pytest_cache" / "d" / "edgetk_bench_profile"
DEFAULT_LITERT_PYTHON = CACHE / "litert-venv" / "bin" / "python"
MODELS = ("squeezenet-fp32", "squeezenet-int8", "digits-fp32", "digits-int8")

OVERHEAD_TARGET = 1.02
SCRIPT_TOLERANCE = 0.05
SSH_TOLERANCE = 0.05
ADAPTIVE_TARGET_CI = 0.01
ADAPTIVE_MAX_S = 60.0  # edgetk's adaptive mode gives up here; so does the script's re-running
PHASE_PROFILES = 7

# A bare timing loop: the floor any profiler is measured against. Same warmup seconds as edgetk.
BARE_LOOP = r"""
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
path, threads, seconds, runs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
it = Interpreter(model_path=path, num_threads=threads)
it.allocate_tensors()
rng = np.random.default_rng(0)
for d in it.get_input_details():
    if np.issubdtype(d["dtype"], np.floating):
        it.set_tensor(d["index"], rng.uniform(-1, 1, d["shape"]).astype(d["dtype"]))
    else:
        info = np.iinfo(d["dtype"])
        it.set_tensor(d["index"], rng.integers(info.min, info.max, d["shape"], endpoint=True).astype(d["dtype"]))
invoke, clock = it.invoke, time.perf_counter_ns
end = time.perf_counter() + 0.5
while time.perf_counter() < end:
    invoke()
samples = []
start = clock()
while len(samples) < runs or clock() - start < seconds * 1e9:
    t0 = clock(); invoke(); samples.append(clock() - t0)
print(json.dumps({"p50_ms": float(np.median(samples)) / 1e6, "count": len(samples)}))
"""

# ai-edge-litert's benchmark script, run as its own main(); its samples are read where it takes
# their median (it prints and rounds to 0.01 ms, too coarse for a 10 µs model).
LITERT_SCRIPT = r"""
import importlib.util, json, statistics, sys, time
import ai_edge_litert, os
path = os.path.join(os.path.dirname(ai_edge_litert.__file__), "tools", "benchmark_litert_model.py")
spec = importlib.util.spec_from_file_location("benchmark_litert_model", path)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
seen = {}
class Statistics:
    mean = staticmethod(statistics.mean)
    stdev = staticmethod(statistics.stdev)
    @staticmethod
    def median(values):
        seen["samples"] = list(values)
        return statistics.median(values)
script.statistics = Statistics
model, threads, runs = sys.argv[1], sys.argv[2], sys.argv[3]
sys.argv = ["benchmark_litert_model.py", f"--model={model}", f"--num_threads={threads}", f"--num_runs={runs}"]
script.run_benchmark(script.parse_args())
print("EDGETK-SAMPLES " + json.dumps(seen["samples"]))
"""

# The two APIs' per-call cost on the same model, in one process: blocks of Interpreter.invoke()
# and CompiledModel.run_by_name (the script's timed call, LiteRT >= 2.3) alternate, so drift hits
# both alike. Prints both p50s.
API_LOOP = r"""
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.hardware_accelerator import HardwareAccelerator
from ai_edge_litert.options import CpuOptions, Options
path, threads, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
it = Interpreter(model_path=path, num_threads=threads)
it.allocate_tensors()
options = Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=CpuOptions(num_threads=threads))
model = CompiledModel.from_file(path, options=options)
sig = list(model.get_signature_list())[0]
ins = {n: model.create_input_buffer_by_name(sig, n) for n in model.get_input_tensor_details(sig)}
outs = {n: model.create_output_buffer_by_name(sig, n) for n in model.get_output_tensor_details(sig)}
invoke, clock = it.invoke, time.perf_counter_ns
samples = {"invoke": [], "run_by_name": []}
# Each call written out in its own loop, as the script and edgetk write theirs (no wrapper call).
def invoke_block(budget_ns):
    out, end = samples["invoke"], clock() + budget_ns
    while True:
        t0 = clock(); invoke(); t1 = clock()
        out.append(t1 - t0)
        if t1 >= end:
            return
def run_by_name_block(budget_ns):
    out, end = samples["run_by_name"], clock() + budget_ns
    while True:
        t0 = clock(); model.run_by_name(sig, ins, outs); t1 = clock()
        out.append(t1 - t0)
        if t1 >= end:
            return
for block in (invoke_block, run_by_name_block):
    block(0)
blocks = 20
for index in range(blocks):
    pair = (invoke_block, run_by_name_block)
    for block in pair if index % 2 == 0 else pair[::-1]:
        block(int(seconds / blocks / 2 * 1e9))
samples = {name: values[5:] for name, values in samples.items()}
print(json.dumps({name: float(np.median(values)) / 1e6 for name, values in samples.items()}))
"""


@dataclass
class Pairs:
    """Both sides of a comparison, one value each per round."""

    edgetk: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)

    def ratios(self) -> list[float]:
        """edgetk / other per round; a round where neither side got an answer (both inf) has none."""
        out = []
        for a, b in zip(self.edgetk, self.other, strict=True):
            if (math.isinf(a) and math.isinf(b)) or not b:
                continue
            out.append(0.0 if math.isinf(b) else a / b)
        return out


@dataclass
class Row:
    model: str
    comparison: str
    pairs: Pairs | None  # None: skipped
    unit: str
    target: str
    check: Callable[[float], bool] | None  # on the median per-round ratio; None: information only
    gating: bool = True  # False: the verdict is shown in parentheses and does not fail the run

    @property
    def edgetk(self) -> float | None:
        return statistics.median(self.pairs.edgetk) if self.pairs and self.pairs.edgetk else None

    @property
    def other(self) -> float | None:
        return statistics.median(self.pairs.other) if self.pairs and self.pairs.other else None

    @property
    def ratio(self) -> float | None:
        ratios = self.pairs.ratios() if self.pairs else []
        return statistics.median(ratios) if ratios else None

    @property
    def spread(self) -> tuple[float, float] | None:
        ratios = self.pairs.ratios() if self.pairs else []
        return (min(ratios), max(ratios)) if ratios else None

    @property
    def passed(self) -> bool | None:
        """True/False on the target; None for information rows and skipped ones."""
        if self.check is None or self.ratio is None:
            return None
        return self.check(self.ratio)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "comparison": self.comparison,
            "edgetk": self.edgetk,
            "other": self.other,
            "unit": self.unit,
            "ratio": self.ratio,
            "spread": self.spread,
            "target": self.target,
            "passed": self.passed,
            "gating": self.gating,
            "rounds": {"edgetk": self.pairs.edgetk, "other": self.pairs.other} if self.pairs else None,
        }


# --- models -----------------------------------------------------------------------------------------


def _converted(name: str, source: Path, variants: tuple[str, ...], **kwargs: Any) -> dict[str, Path]:
    """Convert once; reuse the files while they exist."""
    from converters import convert_model

    out = CACHE / name
    wanted = {v: out / f"{source.stem}.{v}.tflite" for v in variants}
    if all(p.is_file() for p in wanted.values()):
        return wanted
    result = convert_model(source, out, variants=variants, **kwargs)
    return {v: result.variants[v].tflite_path for v in variants}


def prepare_models(names: list[str]) -> dict[str, Path]:
    """squeezenet-{fp32,int8} and digits-{fp32,int8} as .tflite files (converted on first use)."""
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # onnxsim
    models: dict[str, Path] = {}
    if any(n.startswith("squeezenet") for n in names):
        sys.path.insert(0, str(REPO))
        from tests.fixtures.onnx_models import materialize_light_model

        onnx = CACHE / "squeezenet.onnx"
        if not onnx.is_file():
            materialize_light_model("squeezenet", onnx)
        paths = _converted("squeezenet", onnx, ("fp32", "int8"), synthetic_calibration=True)
        models.update({f"squeezenet-{v}": p for v, p in paths.items()})
    if any(n.startswith("digits") for n in names):
        digits = REPO / "examples" / "digits"
        paths = _converted("digits", digits / "digits.onnx", ("fp32", "int8"), calibration=digits / "calib.npy")
        models.update({f"digits-{v}": p for v, p in paths.items()})
    return {n: models[n] for n in names}


# --- the sides ----------------------------------------------------------------------------------------


def _settings(seconds: float, **overrides: Any) -> Any:
    from toolkit.results import BenchmarkSettings

    values = {"warmup_runs": 1, "warmup_min_s": 0.5, "num_runs": 50, "min_s": seconds, "max_s": 10 * seconds + 30}
    return BenchmarkSettings(**{**values, **overrides})


def edgetk_profile(model: Path, transport: Any, threads: int, settings: Any, python: str | None = None) -> dict:
    from toolkit.profile import ProfileRequest, profile_model

    request = ProfileRequest(model, delegates=("xnnpack",), threads=threads, settings=settings, python=python)
    return profile_model(request, transport)


def bare_loop_p50(model: Path, threads: int, seconds: float) -> float:
    out = subprocess.run(
        [sys.executable, "-c", BARE_LOOP, str(model), str(threads), str(seconds), "50"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["p50_ms"]


def litert_script_samples(python: str, model: Path, threads: int, runs: int) -> list[float]:
    proc = subprocess.run(
        [python, "-c", LITERT_SCRIPT, str(model), str(threads), str(runs)], capture_output=True, text=True
    )
    for line in proc.stdout.splitlines():
        if line.startswith("EDGETK-SAMPLES "):
            return json.loads(line[len("EDGETK-SAMPLES ") :])
    raise RuntimeError(f"the LiteRT script failed: {proc.stderr[-1500:]}")


def api_p50s(python: str, model: Path, threads: int, seconds: float) -> dict[str, float]:
    """p50 of Interpreter.invoke() and of CompiledModel.run_by_name on the same model, in ms."""
    out = subprocess.run(
        [python, "-c", API_LOOP, str(model), str(threads), str(seconds)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def alternate(rounds: int, left: Callable[[], float], right: Callable[[], float]) -> Pairs:
    """Each side once per round, alternating who goes first; the figures paired by round."""
    pairs = Pairs()
    for index in range(rounds):
        order = ((pairs.edgetk, left), (pairs.other, right))
        for sink, side in order if index % 2 == 0 else order[::-1]:
            sink.append(side())
    return pairs


def at_most(limit: float) -> Callable[[float], bool]:
    return lambda ratio: ratio <= limit


def within(tolerance: float) -> Callable[[float], bool]:
    return lambda ratio: abs(ratio - 1) <= tolerance


def below(limit: float) -> Callable[[float], bool]:
    return lambda ratio: ratio < limit


# --- the comparisons ----------------------------------------------------------------------------------


def overhead_row(name: str, model: Path, local: Any, args: argparse.Namespace) -> Row:
    settings = _settings(args.seconds)
    pairs = alternate(
        args.rounds,
        lambda: edgetk_profile(model, local, args.threads, settings)["timings"]["p50"],
        lambda: bare_loop_p50(model, args.threads, args.seconds),
    )
    target = f"<= {OVERHEAD_TARGET:.2f}x"
    return Row(name, "p50 vs bare invoke() loop", pairs, "ms", target, at_most(OVERHEAD_TARGET))


def script_rows(name: str, model: Path, local: Any, args: argparse.Namespace) -> list[Row]:
    python = args.litert_python
    tolerance = f"1 ± {SCRIPT_TOLERANCE}"
    titles = (
        "p50 vs LiteRT script (raw)",
        "p50 like for like vs LiteRT script",
        "(info: script vs bare run_by_name)",
        "adaptive wall vs script to 1% CI",
    )
    if python is None:
        return [Row(name, title, None, "ms", "-", None) for title in titles]
    runs = max(50, int(args.seconds / 0.001)) if "digits" in name else 200
    settings = _settings(args.seconds, warmup_runs=5, warmup_min_s=0.0, num_runs=runs, min_s=0.0)
    raw, like, api = Pairs(), Pairs(), Pairs()
    for index in range(args.rounds):
        sides = [
            ("edgetk", lambda: edgetk_profile(model, local, args.threads, settings, python)["timings"]["p50"]),
            ("script", lambda: statistics.median(litert_script_samples(python, model, args.threads, runs))),
            ("api", lambda: api_p50s(python, model, args.threads, args.seconds)),
        ]
        got = {key: side() for key, side in (sides if index % 2 == 0 else sides[::-1])}
        difference = got["api"]["run_by_name"] - got["api"]["invoke"]
        raw.edgetk.append(got["edgetk"])
        raw.other.append(got["script"])
        like.edgetk.append(got["edgetk"] + difference)
        like.other.append(got["script"])
        api.edgetk.append(got["script"])
        api.other.append(got["api"]["run_by_name"])
    wall = alternate(
        args.wall_rounds,
        lambda: adaptive_wall_s(model, local, args.threads, python),
        lambda: script_wall_to_ci(python, model, args.threads),
    )
    return [
        Row(name, titles[0], raw, "ms", tolerance, within(SCRIPT_TOLERANCE), gating=False),
        Row(name, titles[1], like, "ms", tolerance, within(SCRIPT_TOLERANCE)),
        Row(name, titles[2], api, "ms", "-", None),
        Row(name, titles[3], wall, "s", "< 1.00x", below(1.0)),
    ]


def adaptive_wall_s(model: Path, local: Any, threads: int, python: str) -> float:
    settings = _settings(
        1.0, warmup_runs=5, warmup_min_s=0.0, adaptive=True, target_ci=ADAPTIVE_TARGET_CI, max_s=ADAPTIVE_MAX_S
    )
    start = time.perf_counter()
    result = edgetk_profile(model, local, threads, settings, python)
    wall = time.perf_counter() - start
    if result["timings"]["stop_reason"] != "converged":
        return float("inf")
    return wall


def script_wall_to_ci(python: str, model: Path, threads: int, limit_s: float = ADAPTIVE_MAX_S) -> float:
    """Wall time of re-running the script with doubling --num_runs until its median CI is within 1%.

    inf when it gets there no sooner than edgetk's adaptive mode would give up (its max_s).
    """
    from toolkit.runner.stats import median_ci_rel

    start = time.perf_counter()
    runs = 50
    while time.perf_counter() - start < limit_s:
        samples = litert_script_samples(python, model, threads, runs)
        ci = median_ci_rel(sorted(samples))
        if ci is not None and ci <= ADAPTIVE_TARGET_CI:
            return time.perf_counter() - start
        runs *= 2
    return float("inf")


COMPLETE = ("timings", "memory", "delegation", "selection", "parity")


def ssh_row(name: str, model: Path, local: Any, ssh: Any, args: argparse.Namespace) -> Row:
    settings = _settings(args.seconds)
    results: list[dict] = []

    def over_ssh() -> float:
        results.append(edgetk_profile(model, ssh, args.threads, settings, sys.executable))
        return results[-1]["timings"]["p50"]

    pairs = alternate(
        args.rounds, over_ssh, lambda: edgetk_profile(model, local, args.threads, settings)["timings"]["p50"]
    )
    last = results[-1]
    complete = all(last.get(k) for k in COMPLETE) and last["device"]["fingerprint"].get("runtime") is not None
    title = "p50 over ssh vs local" + ("" if complete else " (INCOMPLETE)")
    check = within(SSH_TOLERANCE) if complete else (lambda ratio: False)
    return Row(name, title, pairs, "ms", f"1 ± {SSH_TOLERANCE}", check)


def phase_breakdown(model: Path, local: Any, threads: int, python: str | None) -> dict[str, Any]:
    """Medians over a few adaptive profiles: the runner's phases, its device time, the whole call."""
    from toolkit.profile import RUNNER_MODES, ProfileRequest, model_file, plan_run

    settings = _settings(
        1.0, warmup_runs=5, warmup_min_s=0.0, adaptive=True, target_ci=ADAPTIVE_TARGET_CI, max_s=ADAPTIVE_MAX_S
    )
    request = ProfileRequest(model, delegates=("xnnpack",), threads=threads, settings=settings, python=python)
    plan = plan_run(request, None, local)
    documents = []
    for _ in range(PHASE_PROFILES):
        start = time.perf_counter()
        document = RUNNER_MODES["python"](local, request, plan, model_file(model))
        document["call_s"] = time.perf_counter() - start
        documents.append(document)
    phases = {
        name: statistics.median(d["phases_ms"].get(name, 0.0) for d in documents) for name in documents[-1]["phases_ms"]
    }
    return {
        "phases_ms": phases,
        "device_time_ms": statistics.median(d["device_time_s"] for d in documents) * 1000,
        "reaching_ms": statistics.median(d["call_s"] - d["device_time_s"] for d in documents) * 1000,
        "fixed_ms": statistics.median(d["call_s"] - _measuring_s(d["timings"]) for d in documents) * 1000,
        "timed_runs": statistics.median(d["timings"]["count"] for d in documents),
    }


def _measuring_s(timings: dict[str, Any]) -> float:
    """Seconds spent in warmup and timed runs (everything else in a call is a fixed cost)."""
    return (sum(timings["samples"]) + timings["warmup_mean"] * timings["warmup_runs"]) / 1000.0


# --- running --------------------------------------------------------------------------------------------


def _open_ssh(root: Path) -> tuple[Any, list[Callable[[], None]]]:
    sys.path.insert(0, str(REPO))
    from tests.servers.sshd import SshKey, SshServer
    from toolkit.transports import open_transport

    server = SshServer(root / "sshd", SshKey.generate(root / "client_key")).start()
    transport = open_transport(server.uri, server.transport_options())
    return transport, [transport.close, server.stop]


def _verdict(row: Row) -> str:
    if row.pairs is None:
        return "SKIP"
    if row.passed is None:
        return "info"
    word = "PASS" if row.passed else "FAIL"
    return word if row.gating else f"({word})"


def _print(rows: list[Row], litert_hint: str | None) -> None:
    header = (
        f"{'model':<16} {'comparison':<36} {'edgetk':>9} {'other':>9} {'ratio':>6} {'spread':>13} {'target':>9}  result"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        digits = 4 if row.unit == "ms" else 2

        def fmt(value: float | None, digits: int = digits) -> str:
            return "-" if value is None else f"{value:.{digits}f}"

        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
        spread = "-" if row.spread is None else f"{row.spread[0]:.3f}-{row.spread[1]:.3f}"
        print(
            f"{row.model:<16} {row.comparison:<36} {fmt(row.edgetk):>9} {fmt(row.other):>9} {ratio:>6} "
            f"{spread:>13} {row.target:>9}  {_verdict(row)}"
        )
    print(
        "ms: p50 latency; s: wall time; edgetk/other: medians over rounds; ratio: median of the per-round ratios "
        "(pass/fail on it); spread: lowest-highest per-round ratio; (PASS)/(FAIL): shown, not gating "
        "(the raw script row compares two different APIs, see the module doc). "
        "ssh per-command overhead: python -m bench.bench_transport"
    )
    if litert_hint:
        print(litert_hint)


def _print_phases(breakdowns: dict[str, dict[str, Any]]) -> None:
    if not breakdowns:
        return
    names = list(breakdowns)
    phases = list(dict.fromkeys(p for b in breakdowns.values() for p in b["phases_ms"]))
    print()
    print("fixed costs of one adaptive profile on the local device (medians, ms)")
    print(f"{'phase':<28}" + "".join(f"{n:>17}" for n in names))
    for phase in phases:
        print(f"{phase:<28}" + "".join(f"{breakdowns[n]['phases_ms'].get(phase, 0.0):>17.2f}" for n in names))
    rows = (
        ("device_time_s (the runner)", "device_time_ms"),
        ("call - device_time_s", "reaching_ms"),
        ("fixed cost (call - runs)", "fixed_ms"),
    )
    for label, key in rows:
        print(f"{label:<28}" + "".join(f"{breakdowns[n][key]:>17.2f}" for n in names))
    print(f"{'timed runs (count)':<28}" + "".join(f"{breakdowns[n]['timed_runs']:>17.0f}" for n in names))


def _litert_python(args: argparse.Namespace) -> tuple[str | None, str | None]:
    if args.no_litert:
        return None, None
    candidate = args.litert_python or (str(DEFAULT_LITERT_PYTHON) if DEFAULT_LITERT_PYTHON.exists() else None)
    if candidate:
        return candidate, None
    venv = DEFAULT_LITERT_PYTHON.parent.parent
    return None, (
        "LiteRT script comparison skipped: it needs ai-edge-litert>=2.3 outside the project venv:\n"
        f"  python3 -m venv {venv} && {venv}/bin/pip install ai-edge-litert==2.3.0"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench.bench_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per p50 comparison")
    parser.add_argument("--wall-rounds", type=int, default=9, help="alternating rounds per wall-time comparison")
    parser.add_argument("--litert-python", help="a Python with ai-edge-litert>=2.3 (and numpy)")
    parser.add_argument("--no-ssh", action="store_true")
    parser.add_argument("--no-litert", action="store_true")
    parser.add_argument("--no-phases", action="store_true", help="skip the fixed-cost breakdown")
    args = parser.parse_args(argv)
    args.litert_python, litert_hint = _litert_python(args)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    models = prepare_models(names)
    from toolkit.transports import open_transport

    rows: list[Row] = []
    breakdowns: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edgetk-bench-profile-") as tmp:
        local = open_transport("local", {"workdir": str(Path(tmp) / "local")})
        cleanup: list[Callable[[], None]] = [local.close]
        try:
            ssh = None
            if not args.no_ssh:
                ssh, more = _open_ssh(Path(tmp))
                cleanup = more + cleanup
            for name, model in models.items():
                if not args.no_phases:
                    breakdowns[name] = phase_breakdown(model, local, args.threads, args.litert_python)
                rows.append(overhead_row(name, model, local, args))
                rows += script_rows(name, model, local, args)
                if ssh is not None:
                    rows.append(ssh_row(name, model, local, ssh, args))
        finally:
            for step in cleanup:
                step()
    _print(rows, litert_hint)
    _print_phases(breakdowns)
    return {
        "threads": args.threads,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "wall_rounds": args.wall_rounds,
        "rows": [row.to_dict() for row in rows],
        "fixed_costs": breakdowns,
        "passed": all(row.passed is not False for row in rows if row.gating),
    }


if __name__ == "__main__":
    figures = main()
    raise SystemExit(0 if figures["passed"] else 1)
