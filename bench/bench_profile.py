"""The profiler against the plainest ways to time a TFLite model, side by side on this machine.

For each model (squeezenet from onnx's light models and the shipped digits example, fp32 and int8,
converted once with `converters.convert_model` and cached):

1. overhead: edgetk's p50 (`profile_model` on the local device: runner.pyz in a child process)
   against a bare `interpreter.invoke()` loop in one process, same runtime, XNNPACK and threads.
   Target: edgetk / bare <= 1.02.
2. the LiteRT script: edgetk's p50 against ai-edge-litert's own Python benchmark script
   (`ai_edge_litert/tools/benchmark_litert_model.py`, shipped from ai-edge-litert 2.3, same
   threads), both run by the same interpreter and runtime version. Target: equal within noise
   (ratio within 1 ± 0.05). Then time to an answer: edgetk's adaptive mode (one call, stops when
   the median's 95% CI is within 1%) against the script re-run with 50, 100, 200, … runs until
   its own samples give the same CI — what a user without adaptive mode has to do. Target:
   edgetk's wall time < the script's.
3. ssh: the same profile through a private sshd on 127.0.0.1 (real ssh/scp) against local.
   Target: p50 within 5%, and the ssh result complete (timings, memory, delegation, selection,
   parity, fingerprint all present).

Each comparison alternates its two sides for several rounds and compares the medians of the
per-round p50s, so the drift of a shared machine hits both alike. The ssh per-command overhead is
bench_transport's figure (`python -m bench.bench_transport`).

ai-edge-litert 2.3 cannot sit in the project venv (onnx2tf pins 2.1.0); part 2 uses a separate
interpreter that has it, given with --litert-python or found at
.pytest_cache/d/edgetk_bench_profile/litert-venv/bin/python. Without one, part 2 is reported as
SKIP with the two commands that create it.

    .venv/bin/python -m bench.bench_profile [--models squeezenet-fp32,digits-int8] [--threads 1]
        [--seconds 2] [--rounds 3] [--litert-python PATH] [--no-ssh] [--no-litert]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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


# The script's timed call, alone: CompiledModel.run_by_name with its buffers (LiteRT >= 2.3).
RUN_BY_NAME_LOOP = r"""
import json, sys, time
import numpy as np
from ai_edge_litert.compiled_model import CompiledModel
from ai_edge_litert.hardware_accelerator import HardwareAccelerator
from ai_edge_litert.options import CpuOptions, Options
path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
options = Options(hardware_accelerators=HardwareAccelerator.CPU, cpu_options=CpuOptions(num_threads=threads))
model = CompiledModel.from_file(path, options=options)
sig = list(model.get_signature_list())[0]
ins = {n: model.create_input_buffer_by_name(sig, n) for n in model.get_input_tensor_details(sig)}
outs = {n: model.create_output_buffer_by_name(sig, n) for n in model.get_output_tensor_details(sig)}
for _ in range(5):
    model.run_by_name(sig, ins, outs)
samples = []
for _ in range(runs):
    t0 = time.perf_counter_ns(); model.run_by_name(sig, ins, outs); samples.append(time.perf_counter_ns() - t0)
print(json.dumps({"p50_ms": float(np.median(samples)) / 1e6}))
"""


@dataclass
class Row:
    model: str
    comparison: str
    edgetk: float | None
    other: float | None
    unit: str
    target: str
    passed: bool | None  # None: information only, or skipped when there are no figures

    @property
    def ratio(self) -> float | None:
        return self.edgetk / self.other if self.edgetk is not None and self.other else None


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


def alternate(rounds: int, left: Callable[[], float], right: Callable[[], float]) -> tuple[float, float]:
    """Medians of each side's per-round figures, sides alternating (and swapping who goes first)."""
    a: list[float] = []
    b: list[float] = []
    for index in range(rounds):
        order = ((a, left), (b, right)) if index % 2 == 0 else ((b, right), (a, left))
        for sink, side in order:
            sink.append(side())
    return statistics.median(a), statistics.median(b)


# --- the comparisons ----------------------------------------------------------------------------------


def overhead_row(name: str, model: Path, local: Any, args: argparse.Namespace) -> Row:
    settings = _settings(args.seconds)
    edgetk, bare = alternate(
        args.rounds,
        lambda: edgetk_profile(model, local, args.threads, settings)["timings"]["p50"],
        lambda: bare_loop_p50(model, args.threads, args.seconds),
    )
    return Row(
        name,
        "p50 vs bare invoke() loop",
        edgetk,
        bare,
        "ms",
        f"<= {OVERHEAD_TARGET:.2f}x",
        edgetk / bare <= OVERHEAD_TARGET,
    )


def script_rows(name: str, model: Path, local: Any, args: argparse.Namespace) -> list[Row]:
    python = args.litert_python
    if python is None:
        return [
            Row(name, "p50 vs LiteRT benchmark script", None, None, "ms", "1 ± 0.05", None),
            Row(name, "(info: script vs bare run_by_name loop)", None, None, "ms", "-", None),
            Row(name, "adaptive wall vs script to 1% CI", None, None, "s", "< 1.00x", None),
        ]
    runs = max(50, int(args.seconds / 0.001)) if "digits" in name else 200
    settings = _settings(args.seconds, warmup_runs=5, warmup_min_s=0.0, num_runs=runs, min_s=0.0)
    edgetk, script = alternate(
        args.rounds,
        lambda: edgetk_profile(model, local, args.threads, settings, python)["timings"]["p50"],
        lambda: statistics.median(litert_script_samples(python, model, args.threads, runs)),
    )
    equal = abs(edgetk / script - 1) <= SCRIPT_TOLERANCE
    adaptive, doubling = alternate(
        args.rounds,
        lambda: adaptive_wall_s(model, local, args.threads, python),
        lambda: script_wall_to_ci(python, model, args.threads),
    )
    # What the script times is CompiledModel.run_by_name, not Invoke alone: its call costs ~1.5 µs
    # more, which shows on models that take microseconds. This row shows the script equals its API.
    script_again, bare_api = alternate(
        args.rounds,
        lambda: statistics.median(litert_script_samples(python, model, args.threads, runs)),
        lambda: run_by_name_p50(python, model, args.threads, runs),
    )
    return [
        Row(name, "p50 vs LiteRT benchmark script", edgetk, script, "ms", f"1 ± {SCRIPT_TOLERANCE}", equal),
        Row(name, "(info: script vs bare run_by_name loop)", script_again, bare_api, "ms", "-", None),
        Row(name, "adaptive wall vs script to 1% CI", adaptive, doubling, "s", "< 1.00x", adaptive < doubling),
    ]


def run_by_name_p50(python: str, model: Path, threads: int, runs: int) -> float:
    out = subprocess.run(
        [python, "-c", RUN_BY_NAME_LOOP, str(model), str(threads), str(runs)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["p50_ms"]


def adaptive_wall_s(model: Path, local: Any, threads: int, python: str) -> float:
    settings = _settings(1.0, warmup_runs=5, warmup_min_s=0.0, adaptive=True, target_ci=ADAPTIVE_TARGET_CI, max_s=60.0)
    start = time.perf_counter()
    result = edgetk_profile(model, local, threads, settings, python)
    wall = time.perf_counter() - start
    if result["timings"]["stop_reason"] != "converged":
        return float("inf")
    return wall


def script_wall_to_ci(python: str, model: Path, threads: int, limit_runs: int = 1 << 16) -> float:
    """Wall time of re-running the script with doubling --num_runs until its median CI is within 1%."""
    from toolkit.runner.stats import median_ci_rel

    start = time.perf_counter()
    runs = 50
    while runs <= limit_runs:
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

    remote, here = alternate(
        args.rounds, over_ssh, lambda: edgetk_profile(model, local, args.threads, settings)["timings"]["p50"]
    )
    last = results[-1]
    complete = all(last.get(k) for k in COMPLETE) and last["device"]["fingerprint"].get("runtime") is not None
    within = abs(remote / here - 1) <= SSH_TOLERANCE
    return Row(
        name,
        "p50 over ssh vs local" + ("" if complete else " (INCOMPLETE)"),
        remote,
        here,
        "ms",
        f"1 ± {SSH_TOLERANCE}",
        within and complete,
    )


# --- running --------------------------------------------------------------------------------------------


def _open_ssh(root: Path) -> tuple[Any, list[Callable[[], None]]]:
    sys.path.insert(0, str(REPO))
    from tests.servers.sshd import SshKey, SshServer
    from toolkit.transports import open_transport

    server = SshServer(root / "sshd", SshKey.generate(root / "client_key")).start()
    transport = open_transport(server.uri, server.transport_options())
    return transport, [transport.close, server.stop]


def _print(rows: list[Row], litert_hint: str | None) -> None:
    header = f"{'model':<16} {'comparison':<40} {'edgetk':>10} {'other':>10} {'ratio':>7} {'target':>9}  result"
    print(header)
    print("-" * len(header))
    for row in rows:
        if row.passed is None:
            result = "SKIP" if row.edgetk is None else "info"
        else:
            result = "PASS" if row.passed else "FAIL"
        fmt = (
            (lambda v: "-" if v is None else f"{v:.4f}")
            if row.unit == "ms"
            else (lambda v: "-" if v is None else f"{v:.2f}")
        )
        ratio = "-" if row.ratio is None else f"{row.ratio:.3f}"
        print(
            f"{row.model:<16} {row.comparison:<40} {fmt(row.edgetk):>10} {fmt(row.other):>10} {ratio:>7} {row.target:>9}  {result}"
        )
    print("(ms: p50 latency; s: wall time. ssh per-command overhead: python -m bench.bench_transport)")
    if litert_hint:
        print(litert_hint)


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
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    parser.add_argument("--litert-python", help="a Python with ai-edge-litert>=2.3 (and numpy)")
    parser.add_argument("--no-ssh", action="store_true")
    parser.add_argument("--no-litert", action="store_true")
    args = parser.parse_args(argv)
    args.litert_python, litert_hint = _litert_python(args)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    models = prepare_models(names)
    from toolkit.transports import open_transport

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="edgetk-bench-profile-") as tmp:
        local = open_transport("local", {"workdir": str(Path(tmp) / "local")})
        cleanup: list[Callable[[], None]] = [local.close]
        try:
            ssh = None
            if not args.no_ssh:
                ssh, more = _open_ssh(Path(tmp))
                cleanup = more + cleanup
            for name, model in models.items():
                rows.append(overhead_row(name, model, local, args))
                rows += script_rows(name, model, local, args)
                if ssh is not None:
                    rows.append(ssh_row(name, model, local, ssh, args))
        finally:
            for step in cleanup:
                step()
    _print(rows, litert_hint)
    return {
        "threads": args.threads,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "rows": [{**row.__dict__, "ratio": row.ratio} for row in rows],
        "passed": all(row.passed is not False for row in rows),
    }


if __name__ == "__main__":
    figures = main()
    raise SystemExit(0 if figures["passed"] else 1)
