"""The measurement itself, run in the supervisor's child process on the device.

Order matters: fingerprint and runtime first; delegate selection (its probes may load the model
several times); cooldown; then the peak-memory reset, the timed `open_model` (init), first
inference, warmup and timed runs; memory peak; finally output parity against the CPU reference
(after the peak is read, so the reference interpreter does not inflate it).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

from toolkit.errors import DeviceSetupError, MissingDependencyError, ToolkitError
from toolkit.runner import thermal
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
    out.update(python=platform.python_version(), numpy=numpy.__version__, runtime=runtime.info())
    return out


class Measurement:
    """One profile of one model with one delegate request, as described by the request dict."""

    def __init__(self, request: dict) -> None:
        self.request = request
        self.settings = LoopSettings.from_dict(request.get("settings") or {})
        self.warnings: list = []
        self.zones = request.get("thermal_zones") or None

    def run(self) -> dict:
        start = time.perf_counter()
        runtime = load_runtime(self.request.get("runtime"))
        document: dict = {"fingerprint": device_fingerprint(runtime)}
        report = self._select(runtime)
        document["selection"] = report.to_dict()
        document["delegate_request"] = list(report.request)
        self.warnings.extend(getattr(report, "warnings", None) or [])
        cooldown = self._cooldown()
        runner, probe, phases = self._measure(report.choice, runtime)
        document["memory"] = phases.pop("memory")
        self.warnings.extend(probe.warnings())
        document["timings"] = phases.pop("timings")
        document["thermal"] = self._thermal_section(phases["before"], phases["after"], cooldown)
        document["delegation"] = runner.delegation()
        document["config"] = {
            "delegate": runner.choice.label,
            "threads": runner.choice.threads,
            "delegate_options": runner.choice.options_dict(),
        }
        self._runtime_warnings(runtime, runner)
        document["parity"] = (
            self._parity(runner, phases["inputs"], runtime) if self.request.get("parity", True) else None
        )
        document["warnings"] = _unique(self.warnings)
        document["runner_wall_s"] = round(time.perf_counter() - start, 3)
        return document

    def _select(self, runtime: Any) -> Any:
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

    def _measure(self, choice: Any, runtime: Any) -> tuple:
        from delegates import open_model

        gc.collect()
        probe = MemoryProbe()
        probe.start()
        t0 = time.perf_counter_ns()
        runner = open_model(
            self.request["model"],
            choice=choice,
            runtime=runtime,
            profile_delegates=self.request.get("profile_delegates") or None,
        )
        init_ns = time.perf_counter_ns() - t0
        inputs = self._inputs(runner)
        runner.set_inputs(inputs)
        invoke = runner.interpreter.invoke
        first_ns = time_once(invoke)
        warm = warmup(invoke, self.settings, first_ns)
        before = thermal.read_snapshot()
        series = timed_runs(invoke, self.settings)
        after = thermal.read_snapshot()
        memory = probe.finish()  # before the statistics below allocate anything
        samples = series.samples_ms()
        timings = {
            "init": _ms(init_ns),
            "first": _ms(first_ns),
            "warmup_mean": _ms(warm.mean_ns()),
            "warmup_runs": len(warm.samples_ns),
            "count": len(samples),
            **summarize(samples),
            "samples": samples,
            "stop_reason": series.stop_reason,
            "ci95_rel": series.ci95_rel,
        }
        phases = {"timings": timings, "memory": memory, "before": before, "after": after, "inputs": inputs}
        return runner, probe, phases

    def _inputs(self, runner: Any) -> Any:
        path = self.request.get("inputs")
        if path:
            from toolkit.runner.inputs import load_inputs

            return load_inputs(path)
        return runner.random_inputs(seed=int(self.request.get("seed") or 0))

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

    def _parity(self, runner: Any, inputs: Any, runtime: Any) -> dict:
        from delegates import open_model
        from toolkit.runner.parity import compare_outputs

        got = runner.invoke(inputs)
        reference = open_model(self.request["model"], choice=None, threads=runner.choice.threads, runtime=runtime)
        return compare_outputs(got, reference.invoke(inputs))


def _unique(items: list) -> list:
    seen: set = set()
    return [x for x in items if not (x in seen or seen.add(x))]


def _write_atomically(path: str, document: dict) -> None:
    temp = path + ".tmp"
    with open(temp, "w") as handle:
        json.dump(document, handle, allow_nan=False)
    os.replace(temp, path)


def main(request_path: str) -> int:
    """Child entry point: measure, write result.json next to the request, return the exit status."""
    from toolkit.runner.supervisor import RESULT_FILE

    result_path = os.path.join(os.path.dirname(request_path), RESULT_FILE)
    with open(request_path) as handle:
        request = json.load(handle)
    try:
        document, status = Measurement(request).run(), 0
    except ToolkitError as error:
        document, status = {"error": error.to_dict()}, ERROR_STATUS
    except Exception as exc:  # a bug in the runner or an unexpected runtime error: report it, do not hide it
        traceback.print_exc()
        error = ToolkitError(
            f"the runner failed: {type(exc).__name__}: {exc}",
            "this is a bug in edgetk or the runtime; run with --debug and report the device log",
            traceback=traceback.format_exc(limit=8),
        )
        document, status = {"error": error.to_dict()}, ERROR_STATUS
    _write_atomically(result_path, _finite(document))
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
