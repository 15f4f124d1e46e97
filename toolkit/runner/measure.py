"""The measurement itself, run in the supervisor's child process on the device.

Order matters: runtime and fingerprint first; then delegate selection. For built-in candidates
(cpu, xnnpack) selection drives a `Trial` — this module's measurement — so the model is opened
and run once: cooldown, the peak-memory reset, the timed `open_model` (init), first inference,
warmup and timed runs, the memory peak; then the outputs against the plain CPU reference, which
are both selection's accuracy check and the result's parity (the reference is opened after the
peak is read, so it does not inflate it). Candidates that load a native library are probed in a
separate child first (a crash there costs only the probe) and the chosen one is then measured by
the same Trial. `Phases` records where the time went (`phases_ms` in the device document).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from toolkit.errors import DeviceSetupError, MissingDependencyError, ToolkitError
from toolkit.runner import thermal
from toolkit.runner.clock import Phases
from toolkit.runner.fingerprint import fingerprint, local_facts
from toolkit.runner.memory import MemoryProbe
from toolkit.runner.protocol import ERROR_STATUS
from toolkit.runner.stats import summarize
from toolkit.runner.timing import NS_PER_MS, LoopSettings, time_once, timed_runs, warmup

# Delegates that are part of every TFLite runtime (no library to load).
BUILTIN_DELEGATES = ("cpu", "xnnpack")


def _ms(ns: float | None) -> float | None:
    return None if ns is None else round(ns / NS_PER_MS, 6)


def load_runtime(name: str | None) -> Any:
    """The TFLite runtime; a missing one is a device setup problem here, with the pip command."""
    from delegates.runtime import get_runtime

    try:
        return get_runtime(name)
    except MissingDependencyError as error:
        raise DeviceSetupError(error.message, error.hint, **error.details) from error


def device_fingerprint(runtime: Any) -> dict:
    import numpy

    out = fingerprint(local_facts())
    python = ".".join(str(part) for part in sys.version_info[:3])
    out.update(python=python, numpy=numpy.__version__, runtime=runtime.info())
    return out


@dataclass
class Measured:
    """What one measured configuration gave: timings, memory, thermal snapshots."""

    runner: Any
    timings: dict
    memory: dict
    before: Any  # thermal.Snapshot right before the timed runs
    after: Any  # ... and right after


class Trial:
    """Opens and measures one configuration at a time, as delegate selection (or the runner) asks.

    Implements delegates.probe.Trial: `open` (timed init, after the cooldown and the memory reset),
    `measure` (first, warmup, timed runs, memory peak), `compared` (outputs against the CPU
    reference, opened after the peak is read) and `baseline_ms` (that reference, timed).
    """

    def __init__(self, request: dict, runtime: Any, model: Any, phases: Phases, cooldown: Any) -> None:
        self.request = request
        self.settings = LoopSettings.from_dict(request.get("settings") or {})
        self.runtime = runtime
        self.model = model  # parsed once; every open reuses it
        self.phases = phases
        self._cooldown = cooldown  # called once, right before the first measured open
        self.cooldown: dict | None = None
        self.memory_warnings: list = []
        self.inputs: Any = None
        self.runner: Any = None
        self.measured: Measured | None = None
        self._probe: MemoryProbe | None = None
        self._init_ns = 0
        self._outputs: dict | None = None
        self._reference: Any = None
        self._expected: dict | None = None
        self._reference_error: str | None = None

    # --- delegates.probe.Trial ---------------------------------------------------------------

    def open(self, choice: Any) -> Any:
        from delegates import open_model

        self.phases.mark("selection")
        self._release()
        if self._cooldown is not None:
            self.cooldown, self._cooldown = self._cooldown(), None
            self.phases.mark("cooldown")
        gc.collect()  # what earlier candidates left must not count in this one's memory
        self._probe = MemoryProbe()
        self._probe.start()
        t0 = time.perf_counter_ns()
        self.runner = open_model(
            self.request["model"],
            choice=choice,
            runtime=self.runtime,
            profile_delegates=self.request.get("profile_delegates") or None,
            model=self.model,
        )
        self._init_ns = time.perf_counter_ns() - t0
        self.phases.mark("init")
        return self.runner

    def measure(self, runner: Any) -> float:
        if self.inputs is None:
            self.inputs = self._load_inputs(runner)
        runner.set_inputs(self.inputs)
        invoke = runner.interpreter.invoke
        first_ns = time_once(invoke)
        warm = warmup(invoke, self.settings, first_ns)
        self.phases.mark("first + warmup")
        before = thermal.read_snapshot()
        series = timed_runs(invoke, self.settings)
        after = thermal.read_snapshot()
        memory = self._probe.finish()  # before the statistics below allocate anything
        self.memory_warnings = self._probe.warnings()
        self.phases.mark("timed runs")
        samples = series.samples_ms_array()
        timings = {
            "init": _ms(self._init_ns),
            "first": _ms(first_ns),
            "warmup_mean": _ms(warm.mean_ns()),
            "warmup_runs": len(warm.samples_ns),
            "count": len(samples),
            **summarize(samples),
            "samples": samples.tolist(),
            "stop_reason": series.stop_reason,
            "ci95_rel": series.ci95_rel,
        }
        self.measured = Measured(runner, timings, memory, before, after)
        self.phases.mark("statistics")
        return timings["p50"]

    def compared(self, runner: Any) -> tuple:
        if self._outputs is None:
            self._outputs = runner.invoke(self.inputs)
        reference = self._open_reference(runner.choice.threads)
        if reference is not None and self._expected is None:
            self._expected = reference.invoke(self.inputs)
        self.phases.mark("outputs vs CPU reference")
        return self._outputs, self._expected, self._reference_error

    def baseline_ms(self, choice: Any, budget_s: float, clear_of: float | None = None) -> float | None:
        from delegates.probe import measure

        if choice.delegate == "cpu" or self._open_reference(choice.threads) is None:
            return None
        baseline = measure(self._reference, self.inputs, budget_s, clear_of=clear_of)
        self.phases.mark("speed baseline")
        return baseline

    # --- the runner's side -----------------------------------------------------------------------

    def has_measured(self, choice: Any) -> bool:
        """True when the last measurement is of exactly this configuration."""
        return self.measured is not None and self.measured.runner.choice == choice

    def parity(self) -> dict | None:
        """Outputs of the measured configuration against the plain CPU reference (toolkit.results.Parity)."""
        from toolkit.runner.parity import compare_outputs

        got, expected, _ = self.compared(self.measured.runner)
        return None if expected is None else compare_outputs(got, expected)

    def reference_problem(self) -> str | None:
        return self._reference_error

    def _open_reference(self, threads: int | None) -> Any:
        from delegates import open_model

        if self._reference is None and self._reference_error is None:
            try:
                self._reference = open_model(
                    self.request["model"], choice=None, threads=threads, runtime=self.runtime, model=self.model
                )
            except ToolkitError as error:
                # e.g. a custom op only a delegate implements: no CPU path to compare with.
                self._reference_error = error.message
        return self._reference

    def _release(self) -> None:
        """Forget the previous candidate and its reference (a new candidate is measured from scratch)."""
        self.runner = self.measured = self._reference = self._expected = self._outputs = None
        self._reference_error = None

    def _load_inputs(self, runner: Any) -> Any:
        path = self.request.get("inputs")
        if path:
            from toolkit.runner.inputs import load_inputs

            return load_inputs(path)
        return runner.random_inputs(seed=int(self.request.get("seed") or 0))


class Measurement:
    """One profile of one model with one delegate request, as described by the request dict."""

    def __init__(self, request: dict, phases: Phases | None = None) -> None:
        self.request = request
        self.warnings: list = []
        self.zones = request.get("thermal_zones") or None
        self.phases = phases or Phases()

    def run(self) -> dict:
        from delegates import parse_model

        phases = self.phases
        phases.mark("child start")
        runtime = load_runtime(self.request.get("runtime"))
        phases.mark("runtime import")
        document: dict = {"fingerprint": device_fingerprint(runtime)}
        phases.mark("fingerprint")
        model = parse_model(self.request["model"])
        _settle_garbage_collector()
        phases.mark("model parse")
        trial = Trial(self.request, runtime, model, phases, self._cooldown)
        report = self._select(runtime, model, trial)
        phases.mark("selection")
        document["selection"] = report.to_dict()
        document["delegate_request"] = list(report.request)
        self.warnings.extend(getattr(report, "warnings", None) or [])
        if not trial.has_measured(report.choice):
            trial.measure(trial.open(report.choice))
        measured = trial.measured
        runner = measured.runner
        document["memory"] = measured.memory
        self.warnings.extend(trial.memory_warnings)
        document["timings"] = measured.timings
        document["thermal"] = self._thermal_section(measured.before, measured.after, trial.cooldown)
        document["delegation"] = runner.delegation()
        document["config"] = {
            "delegate": runner.choice.label,
            "threads": runner.choice.threads,
            "delegate_options": runner.choice.options_dict(),
        }
        self._runtime_warnings(runtime, runner)
        document["parity"] = self._parity(trial) if self.request.get("parity", True) else None
        document["warnings"] = _unique(self.warnings)
        phases.mark("result")
        return document

    def _select(self, runtime: Any, model: Any, trial: Trial) -> Any:
        from delegates import select_delegate

        return select_delegate(
            self.request["model"],
            list(self.request.get("delegates") or []) or None,
            threads=self.request.get("threads"),
            delegate_options=self.request.get("delegate_options") or None,
            profile_delegates=self.request.get("profile_delegates") or None,
            profile_order=list(self.request.get("profile_order") or []) or None,
            thread_counts=list(self.request.get("thread_counts") or []) or None,
            runtime=runtime.name,
            isolate=self._needs_isolated_probes(),
            # One delegate asked for by name is what the user wants measured, even where the plain
            # CPU kernels would be faster; a preference list keeps the "slower than CPU" fallback.
            check_speed=len(self.request.get("delegates") or []) != 1,
            trial=trial,
            parsed=model,
        )

    def _needs_isolated_probes(self) -> bool:
        """Probe in a separate child only for delegates that load native libraries.

        This process is already the supervisor's sacrificial child; the runtime's built-in kernels
        and XNNPACK cannot crash in a probe any differently than in the measurement itself.
        """
        names = self.request.get("delegates") or self.request.get("profile_order") or ["xnnpack"]
        return any(str(name).lower() not in BUILTIN_DELEGATES for name in names)

    def _cooldown(self) -> dict | None:
        threshold = (self.request.get("settings") or {}).get("cooldown_below_c")
        if threshold is None:
            return None
        max_s = float((self.request.get("settings") or {}).get("cooldown_max_s") or 300.0)
        waited, reached = thermal.wait_for_cooldown(
            float(threshold),
            max_s,
            lambda: thermal.pick_zones(thermal.read_snapshot().temps_c, self.zones),
        )
        if reached is None:
            self.warnings.append("cooldown requested but no thermal zone is readable on this device")
        elif not reached:
            self.warnings.append(f"zones still at or above {threshold:g} °C after the {max_s:g} s cooldown limit")
        return {"waited_s": round(waited, 3), "reached": reached}

    def _thermal_section(self, before: Any, after: Any, cooldown: dict | None) -> dict | None:
        if not (before.temps_c or before.cpu_khz or cooldown):
            return None
        changed = thermal.clocks_changed(before, after)
        if changed:
            self.warnings.append("CPU clocks changed during the timed runs (throttling or DVFS): compare with care")
        return {
            "before_c": thermal.pick_zones(before.temps_c, self.zones),
            "after_c": thermal.pick_zones(after.temps_c, self.zones),
            "cpu_khz_before": before.cpu_khz,
            "cpu_khz_after": after.cpu_khz,
            "clocks_changed": changed,
            "cooldown_waited_s": cooldown["waited_s"] if cooldown else None,
        }

    def _runtime_warnings(self, runtime: Any, runner: Any) -> None:
        from delegates.runtime import runtime_warnings

        self.warnings.extend(runtime_warnings(runtime, int8_model=runner.int8_model, delegate=runner.choice.delegate))

    def _parity(self, trial: Trial) -> dict | None:
        parity = trial.parity()
        if parity is None:
            problem = trial.reference_problem()
            self.warnings.append(f"no parity figures: the plain CPU reference cannot run this model ({problem})")
        return parity


def _settle_garbage_collector() -> None:
    """Everything so far (modules, the parsed model) lives to the end: move it out of the
    collector's sight, so the collections before each measured open only look at new objects."""
    gc.freeze()
    gc.enable()


def _unique(items: list) -> list:
    seen: set = set()
    return [x for x in items if not (x in seen or seen.add(x))]


def _write_atomically(path: str, document: dict) -> None:
    try:
        text = json.dumps(document, allow_nan=False, separators=(",", ":"))
    except ValueError:  # a NaN or inf somewhere (rare): walk the document only then
        text = json.dumps(_finite(document), allow_nan=False, separators=(",", ":"))
    temp = path + ".tmp"
    with open(temp, "w") as handle:
        handle.write(text)
    os.replace(temp, path)


def main(request_path: str) -> int:
    """Child entry point: measure, write result.json next to the request, return the exit status."""
    from toolkit.runner.supervisor import PHASES_FILE, RESULT_FILE

    result_path = os.path.join(os.path.dirname(request_path), RESULT_FILE)
    with open(request_path) as handle:
        request = json.load(handle)
    phases = Phases.from_wire(request.get("phases") or [])
    try:
        document, status = Measurement(request, phases).run(), 0
    except ToolkitError as error:
        document, status = {"error": error.to_dict()}, ERROR_STATUS
    except Exception as exc:  # a bug in the runner or an unexpected runtime error: report it, do not hide it
        import traceback

        traceback.print_exc()
        error = ToolkitError(
            f"the runner failed: {type(exc).__name__}: {exc}",
            "this is a bug in edgetk or the runtime; run with --debug and report the device log",
            traceback=traceback.format_exc(limit=8),
        )
        document, status = {"error": error.to_dict()}, ERROR_STATUS
    _write_atomically(result_path, document)
    _write_atomically(os.path.join(os.path.dirname(request_path), PHASES_FILE), {"marks": phases.to_wire()})
    sys.stdout.flush()
    return status


def _finite(value: Any) -> Any:
    """NaN/inf are not JSON: write them as null."""
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
