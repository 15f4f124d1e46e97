"""Try delegate candidates on a model: load, delegation, accuracy vs CPU, brief timing.

Runs in a child process started by delegates.selection (so a segfaulting vendor delegate kills the
child, not the caller). The child reads one JSON request on stdin and writes JSON lines on stdout:
`{"event": "current", "key": ...}` before touching a candidate's native code, then one
`{"event": "attempt", ...}` per candidate and `{"event": "measured", ...}` in auto mode. A crash
is attributed to the last "current" key. The same functions run in-process when isolation is off.

`try_in_place` is the same check for a built-in candidate (cpu, xnnpack) driven by a caller that
measures anyway (the device runner): the caller's own timed open, runs and output comparison are
the probe, so the model is opened and run once instead of twice (docs/profiling.md).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from delegates.choice import CPU, XNNPACK, DelegateChoice
from delegates.model_runner import ModelRunner, open_model
from toolkit.errors import BadInputError, DelegateError, ToolkitError

MARK = "@@edgetk-probe@@ "  # prefix of protocol lines, so library chatter on stdout is ignored
Emit = Callable[[dict], None]


@dataclass
class ProbeSettings:
    """What to check for each candidate."""

    model: str
    runtime: str | None = None
    profile_delegates: dict[str, Any] = field(default_factory=dict)
    tolerance: float = 1e-3
    check_accuracy: bool = True
    check_speed: bool = True
    seed: int = 0
    stop_at_first: bool = True  # preference mode: the first acceptable candidate wins
    speed_budget_s: float = 0.3  # per comparison against the CPU baseline
    auto_budget_s: float = 1.5  # auto mode: total measuring time across candidates
    slower_margin: float = 1.05  # "slower than CPU" only beyond measurement noise

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeSettings:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Prober:
    """Holds the CPU reference and baselines while candidates are tried one by one."""

    def __init__(self, settings: ProbeSettings, emit: Emit) -> None:
        self.settings = settings
        self.emit = emit
        self._reference: ModelRunner | None = None
        self._inputs: dict[str, np.ndarray] | None = None
        self._expected: dict[str, np.ndarray] | None = None
        self._baselines: dict[str, float | None] = {}
        self.viable: dict[str, ModelRunner] = {}
        self.reference_error: str | None = None

    # --- reference ---------------------------------------------------------------------------------

    def reference(self) -> ModelRunner | None:
        """The plain CPU interpreter and its outputs; None when the model cannot run without a delegate."""
        if self._reference is None and self.reference_error is None:
            self.emit({"event": "current", "key": "reference"})
            try:
                self._reference = open_model(self.settings.model, None, runtime=self.settings.runtime)
            except ToolkitError as exc:
                # e.g. an Edge TPU-compiled model: its custom op exists only in the delegate.
                self.reference_error = exc.message
                self.emit({"event": "reference_failed", "error": exc.to_dict()})
                return None
            self._inputs = self._reference.random_inputs(self.settings.seed)
            self._expected = self._reference.invoke(self._inputs)
        return self._reference

    def baseline_ms(self, choice: DelegateChoice) -> float | None:
        """p50 of the CPU path this candidate must beat: XNNPACK for accelerators, plain CPU for XNNPACK."""
        if choice.delegate == CPU:
            return None
        base = DelegateChoice(CPU if choice.delegate == XNNPACK else XNNPACK, threads=choice.threads)
        if base.key not in self._baselines:
            self.emit({"event": "current", "key": f"baseline {base.key}"})
            try:
                runner = open_model(self.settings.model, base, runtime=self.settings.runtime)
                self._baselines[base.key] = measure(runner, self._inputs, self.settings.speed_budget_s)
            except ToolkitError:
                self._baselines[base.key] = None  # no baseline, no speed verdict
            self.emit({"event": "current", "key": choice.key})
        return self._baselines[base.key]

    # --- one candidate -------------------------------------------------------------------------------

    def open(self, choice: DelegateChoice) -> ModelRunner:
        self.emit({"event": "current", "key": choice.key})
        return open_model(
            self.settings.model,
            choice,
            runtime=self.settings.runtime,
            profile_delegates=self.settings.profile_delegates,
        )

    def try_candidate(self, choice: DelegateChoice, tolerance: float | None = None) -> dict[str, Any]:
        """Open, check delegation, accuracy and speed; return an attempt dict."""
        self.reference()
        try:
            runner = self.open(choice)
        except (DelegateError, BadInputError) as exc:
            return open_failed(choice, exc)
        delegation = runner.delegation()
        details: dict[str, Any] = {"threads": choice.threads, "delegation": delegation}
        rejected = took_nothing(choice, delegation, details)
        if rejected is not None:
            return rejected
        if self._inputs is None:
            self._inputs = runner.random_inputs(self.settings.seed)
        tol = self.settings.tolerance if tolerance is None else tolerance
        verdict = None
        if self._expected is None:
            details["accuracy"] = no_reference_note(self.reference_error)
        elif self.settings.check_accuracy:
            verdict = accuracy_verdict(self._expected, runner.invoke(self._inputs), tol, details)
        if verdict is not None:
            return _attempt(choice, "inaccurate", verdict, details)
        if self.settings.check_speed:
            slower = self._speed(choice, runner, details)
            if slower is not None:
                return _attempt(choice, "slower", slower, details)
        self.viable[choice.key] = runner
        return _acceptable(choice, delegation, details)

    def _speed(self, choice: DelegateChoice, runner: ModelRunner, details: dict[str, Any]) -> str | None:
        baseline = self.baseline_ms(choice)
        if baseline is None:
            return None
        p50 = measure(runner, self._inputs, self.settings.speed_budget_s)
        return speed_verdict(choice, p50, baseline, self.settings.slower_margin, details)

    # --- auto ------------------------------------------------------------------------------------------

    def race(self) -> dict[str, float]:
        """Measure every viable candidate in interleaved rounds, dropping clear losers; key -> p50 ms."""
        return race(self.viable, self._inputs, self.settings.auto_budget_s, self.emit)


# --- verdicts shared by the probe child and in-place selection --------------------------------------


def open_failed(choice: DelegateChoice, exc: ToolkitError) -> dict[str, Any]:
    """The attempt for a candidate that could not be opened (a delegate failure or a model it refuses)."""
    if isinstance(exc, DelegateError):
        reason = exc.message.replace(f"{choice.label}: ", "", 1)
        return _attempt(choice, exc.details.get("outcome", "failed_to_load"), reason, exc.details)
    return _attempt(choice, "rejected", exc.message)


def took_nothing(choice: DelegateChoice, delegation: dict[str, Any], details: dict[str, Any]) -> dict | None:
    """The "rejected" attempt for a delegate that left every node on the CPU kernels, else None."""
    if choice.delegate == CPU or delegation["delegated_nodes"] > 0:
        return None
    reason = f"{choice.label} took none of the {delegation['total_nodes']} nodes; all run on the CPU kernels"
    return _attempt(choice, "rejected", reason, details)


def no_reference_note(error: str | None) -> str:
    return f"not checked: no CPU reference ({error})"


def accuracy_verdict(expected: dict, got: dict, tolerance: float, details: dict[str, Any]) -> str | None:
    """None when the outputs match the CPU reference within tolerance, else the reason."""
    error, cosine = compare(expected, got)
    details.update(max_rel_error=error, cosine=cosine, tolerance=tolerance)
    if error <= tolerance:
        return None
    return f"outputs differ from the CPU reference: max error {error:.3g} of range > tolerance {tolerance:g}"


def speed_verdict(
    choice: DelegateChoice, p50: float, baseline: float, margin: float, details: dict[str, Any]
) -> str | None:
    """None unless the candidate's p50 is beyond `margin` of the CPU path it must beat."""
    details.update(p50_ms=p50, baseline_ms=baseline)
    if p50 > baseline * margin:
        base = "plain CPU kernels" if choice.delegate == XNNPACK else "XNNPACK on the CPU"
        return f"slower than {base}: p50 {p50:.3g} ms vs {baseline:.3g} ms"
    return None


# --- in place: the caller's measurement is the probe --------------------------------------------------


class Trial(Protocol):
    """What in-place selection needs from a caller that measures (toolkit.runner.measure.Trial)."""

    def open(self, choice: DelegateChoice) -> ModelRunner:
        """Open the model with `choice` as the measurement would (raises DelegateError/BadInputError)."""

    def measure(self, runner: ModelRunner) -> float:
        """Warmup and timed runs; the p50 in ms."""

    def compared(self, runner: ModelRunner) -> tuple[dict, dict | None, str | None]:
        """(outputs, CPU reference outputs or None, why there is no reference) on the measured inputs."""

    def baseline_ms(self, choice: DelegateChoice, budget_s: float, clear_of: float | None = None) -> float | None:
        """p50 of the CPU path `choice` must beat (see `measure` for clear_of), or None when it cannot be timed."""


def try_in_place(
    choice: DelegateChoice, trial: Trial, settings: ProbeSettings, emit: Emit, tolerance: float | None = None
) -> dict[str, Any]:
    """Prober.try_candidate for a built-in candidate, with the caller's own measurement as the probe.

    Same checks, same outcomes and details, same events (`reference_failed`, then the attempt,
    which is also returned); the accuracy check uses the measured inputs and the speed check the
    measurement's p50 (all of it, not a brief probe).
    """
    attempt = _in_place_attempt(choice, trial, settings, emit, tolerance)
    emit(attempt)
    return attempt


def _in_place_attempt(
    choice: DelegateChoice, trial: Trial, settings: ProbeSettings, emit: Emit, tolerance: float | None
) -> dict[str, Any]:
    try:
        runner = trial.open(choice)
    except (DelegateError, BadInputError) as exc:
        return open_failed(choice, exc)
    delegation = runner.delegation()
    details: dict[str, Any] = {"threads": choice.threads, "delegation": delegation}
    rejected = took_nothing(choice, delegation, details)
    if rejected is not None:
        return rejected
    p50 = trial.measure(runner)
    got, expected, missing = trial.compared(runner)
    tol = settings.tolerance if tolerance is None else tolerance
    verdict = None
    if expected is None:
        emit({"event": "reference_failed", "error": {"message": missing}})
        details["accuracy"] = no_reference_note(missing)
    elif settings.check_accuracy:
        verdict = accuracy_verdict(expected, got, tol, details)
    if verdict is not None:
        return _attempt(choice, "inaccurate", verdict, details)
    # The verdict only asks which side of p50 / margin the baseline lies: stop timing once that is clear.
    boundary = p50 / settings.slower_margin if settings.slower_margin > 0 else None
    baseline = trial.baseline_ms(choice, settings.speed_budget_s, boundary) if settings.check_speed else None
    if baseline is not None:
        slower = speed_verdict(choice, p50, baseline, settings.slower_margin, details)
        if slower is not None:
            return _attempt(choice, "slower", slower, details)
    return _acceptable(choice, delegation, details)


def _attempt(choice: DelegateChoice, outcome: str, reason: str, details: dict | None = None) -> dict[str, Any]:
    return {
        "event": "attempt",
        "key": choice.key,
        "delegate": choice.label,
        "outcome": outcome,
        "reason": reason,
        "details": {"threads": choice.threads, **(details or {})},
    }


def _acceptable(choice: DelegateChoice, delegation: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    done, total, parts = delegation["delegated_nodes"], delegation["total_nodes"], delegation["partitions"]
    if choice.delegate == CPU:
        return _attempt(choice, "applied", "plain CPU kernels", details)
    if done < total:
        left = ", ".join(sorted(set(delegation["cpu_ops"])))
        reason = f"{done}/{total} nodes delegated in {parts} partition(s); on CPU: {left}"
        return _attempt(choice, "partial", reason, details)
    return _attempt(choice, "applied", f"{done}/{total} nodes delegated in {parts} partition(s)", details)


# --- numbers -----------------------------------------------------------------------------------------


def compare(expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> tuple[float, float]:
    """(worst max-abs error relative to the reference's range, lowest cosine similarity)."""
    worst, lowest = 0.0, 1.0
    for name, ref in expected.items():
        out = np.asarray(got[name], dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-6)
        worst = max(worst, float(np.max(np.abs(out - ref))) / scale if ref.size else 0.0)
        lowest = min(lowest, _cosine(ref.ravel(), out.ravel()))
    return worst, lowest


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 if norm == 0 else float(np.dot(a, b) / norm)


# With this many samples all on one side of a value, their median's 95% CI (the samples' range:
# 1 - 2/64 coverage) is on that side too.
CLEAR_RUNS = 6


def measure(
    runner: ModelRunner,
    inputs: Any,
    budget_s: float,
    min_runs: int = 3,
    max_runs: int = 500,
    clear_of: float | None = None,
) -> float:
    """Median latency in ms of repeated invokes within a time budget (after one warm-up run).

    With `clear_of` (ms) it stops early once CLEAR_RUNS samples lie all above or all below it: a
    comparison against that value is then settled, and a CPU baseline several times slower than
    XNNPACK is known after a handful of runs instead of the whole budget.
    """
    runner.set_inputs(inputs)
    runner.interpreter.invoke()
    return float(np.median(timed_runs(runner, budget_s, min_runs, max_runs, clear_of)))


def timed_runs(
    runner: ModelRunner, budget_s: float, min_runs: int, max_runs: int, clear_of: float | None = None
) -> list[float]:
    invoke = runner.interpreter.invoke
    samples: list[float] = []
    low, high = float("inf"), 0.0
    deadline = time.perf_counter() + budget_s
    while len(samples) < max_runs and (len(samples) < min_runs or time.perf_counter() < deadline):
        start = time.perf_counter_ns()
        invoke()
        sample = (time.perf_counter_ns() - start) / 1e6
        samples.append(sample)
        low, high = min(low, sample), max(high, sample)
        if clear_of is not None and len(samples) >= CLEAR_RUNS and (low > clear_of or high < clear_of):
            break
    return samples


def race(runners: dict[str, ModelRunner], inputs: Any, budget_s: float, emit: Emit | None = None) -> dict[str, float]:
    """Interleaved rounds (so drift hits every candidate alike); drop those >25% behind the leader."""
    if not runners:
        return {}
    samples: dict[str, list[float]] = {key: [] for key in runners}
    for key, runner in runners.items():
        if emit:
            emit({"event": "current", "key": key})
        runner.set_inputs(inputs)
        runner.interpreter.invoke()  # warm-up
    alive = list(runners)
    rounds = 6
    for round_index in range(rounds):
        slice_s = budget_s / rounds / max(len(alive), 1)
        for key in alive:
            if emit:
                emit({"event": "current", "key": key})
            samples[key] += timed_runs(runners[key], slice_s, 1 if round_index == 0 else 2, 200)
        # After one round only clear losers go (2x); later, anything 25% behind the leader.
        alive = _leaders(alive, samples, 2.0 if round_index == 0 else 1.25)
    return {key: float(np.median(values)) for key, values in samples.items()}


def _leaders(alive: list[str], samples: dict[str, list[float]], margin: float = 1.25) -> list[str]:
    medians = {key: float(np.median(samples[key])) for key in alive}
    best = min(medians.values())
    return [key for key in alive if medians[key] <= best * margin]


# --- the child's main --------------------------------------------------------------------------------


def run_request(request: dict[str, Any], emit: Emit) -> None:
    """Try the request's candidates in order; in auto mode also race the viable ones."""
    settings = ProbeSettings.from_dict(request["settings"])
    prober = Prober(settings, emit)
    prober.reference()
    choices = [(DelegateChoice.from_dict(item), item.get("tolerance")) for item in request["candidates"]]
    if request.get("race_only"):  # candidates were probed already (by a child that crashed later)
        for choice, _ in choices:
            prober.viable[choice.key] = prober.open(choice)
    else:
        for choice, tolerance in choices:
            attempt = prober.try_candidate(choice, tolerance)
            emit(attempt)
            if settings.stop_at_first and attempt["outcome"] in ("applied", "partial"):
                break
    if request.get("race") and len(prober.viable) > 1:
        emit({"event": "measured", "p50_ms": prober.race()})


def main() -> int:
    """Child entry point: JSON request on stdin, protocol lines on stdout."""

    def emit(event: dict) -> None:
        sys.stdout.write(MARK + json.dumps(event, default=str) + "\n")
        sys.stdout.flush()

    request = json.loads(sys.stdin.read())
    run_request(request, emit)
    emit({"event": "done"})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
