"""Delegate selection with fallback: every attempt recorded, the final choice with its history.

`select_delegate(model, ["gpu", "xnnpack"])` tries candidates in order and stops at the first that
loads, takes nodes, matches the CPU reference and is not slower than the CPU path; XNNPACK and
then plain CPU are always appended as the last resort. `["auto"]` tries every delegate that can
exist here (or the profile's preference list) at each thread count and races the viable ones.

Library lookup and model requirements are checked in this process (no native code runs);
loading, delegation, accuracy and timing happen in a child process started as
`[sys.executable, "-c", BOOT, <package root>]`, so a segfaulting delegate only kills the child and
the zipapp runner works too (the root is derived from `delegates.__file__`).

A caller that is about to measure the model anyway (the device runner, itself a sacrificial
process) passes a `trial`: then the built-in candidates (cpu, xnnpack) of a preference list are
checked on the caller's own measurement — its timed open is the load, its timed runs the speed
figure, its output comparison with the CPU reference the accuracy check — instead of a probe that
opens and runs the model once more. Same attempts, outcomes and details; candidates that load a
native library are still probed in a child first.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delegates import compat
from delegates.choice import CPU, XNNPACK, DelegateChoice, as_choice, parse_choice
from delegates.probe import MARK, ProbeSettings, Trial, run_request, try_in_place
from delegates.registry import effective_options, get_spec, locate
from delegates.runtime import get_runtime, runtime_warnings
from delegates.tflite_model import TFLiteModel, parse_model
from toolkit.errors import ConfigError, DelegateError, ToolkitError

AUTO = "auto"
BUILTIN = (CPU, XNNPACK)  # part of every runtime: no native library of their own to load
ACCEPTABLE = ("applied", "partial")
OUTCOMES = (
    "applied",
    "not_found",
    "failed_to_load",
    "rejected",
    "partial",
    "crashed",
    "inaccurate",
    "slower",
    "skipped",
)
# Largest acceptable output error relative to the reference's range, per converter variant.
TOLERANCES = {"fp32": 1e-3, "fp16": 1e-2, "dynamic": 2e-2, "int8": 5e-2, "int8-full": 5e-2, "int16x8": 2e-2}
# Delegate options that trade precision for speed: fp32 models then get the fp16 tolerance.
REDUCED_PRECISION = {
    ("gpu", "precision", "fp16"),
    ("nnapi", "allow_fp16", "true"),
    ("armnn", "reduce-fp32-to-fp16", "true"),
}
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from delegates.probe import main; sys.exit(main())"


@dataclass
class Attempt:
    delegate: str
    outcome: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"delegate": self.delegate, "outcome": self.outcome, "reason": self.reason, "details": self.details}


@dataclass
class SelectionReport:
    """The final choice, every attempt that led to it, auto-mode figures and runtime warnings."""

    request: list[str]
    choice: DelegateChoice | None = None
    attempts: list[Attempt] = field(default_factory=list)
    measurements_ms: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    runtime: dict[str, str] = field(default_factory=dict)

    @property
    def chosen(self) -> str | None:
        return self.choice.label if self.choice else None

    @property
    def delegation(self) -> dict[str, Any] | None:
        """Delegation of the chosen configuration, as probed."""
        for attempt in reversed(self.attempts):
            if self.choice and attempt.outcome in ACCEPTABLE and attempt.details.get("key") == self.choice.key:
                return attempt.details.get("delegation")
        return None

    def to_dict(self) -> dict[str, Any]:
        """The shape of toolkit.results.Selection."""
        return {
            "chosen": self.chosen,
            "attempts": [a.to_dict() for a in self.attempts],
            "measurements_ms": dict(self.measurements_ms),
        }

    def full_dict(self) -> dict[str, Any]:
        """to_dict plus the request, chosen configuration, delegation, warnings and runtime."""
        return {
            **self.to_dict(),
            "request": self.request,
            "choice": self.choice.to_dict() if self.choice else None,
            "delegation": self.delegation,
            "warnings": list(self.warnings),
            "runtime": self.runtime,
        }


# --- request parsing ------------------------------------------------------------------------------------


def parse_request(request: Any, profile_order: list[str] | None = None) -> list[str]:
    """ "gpu,xnnpack" / ["gpu", "xnnpack"] / "auto" / None -> list of names (profile order, else xnnpack)."""
    if request is None or request == [] or request == "":
        return list(profile_order or [XNNPACK])
    items = request.split(",") if isinstance(request, str) else [str(r) for r in request]
    names = []
    for item in items:
        for part in item.split(",") if not item.strip().lower().startswith("external:") else [item]:
            if part.strip():
                names.append(part.strip())
    if not names:
        raise ConfigError("empty --delegate request", "e.g. --delegate gpu,xnnpack or --delegate auto")
    for name in names:
        if name.lower() != AUTO:
            get_spec(parse_choice(name).delegate)  # unknown names fail now, with a suggestion
    return names


# --- public entry points -----------------------------------------------------------------------------------


def select_delegate(
    model_path: Any,
    request: Any = None,
    *,
    threads: int | None = None,
    delegate_options: dict[str, dict[str, Any]] | None = None,
    profile_delegates: dict[str, Any] | None = None,
    profile_order: list[str] | None = None,
    thread_counts: list[int] | None = None,
    runtime: str | None = None,
    tolerance: float | None = None,
    check_accuracy: bool = True,
    check_speed: bool = True,
    isolate: bool = True,
    timeout_s: float = 300.0,
    auto_budget_s: float = 1.5,
    slower_margin: float = 1.05,
    trial: Trial | None = None,
    parsed: TFLiteModel | None = None,
) -> SelectionReport:
    """Pick a delegate for this model on this machine; the report records why.

    delegate_options maps a delegate name (or "external:/path") to its options; profile_delegates
    is a device profile's `delegates` section (library paths and default options). With a `trial`
    (not in auto mode), built-in candidates are checked on the caller's measurement (module doc).
    `parsed` is the model file already parsed by the caller.
    """
    model = parsed if parsed is not None else parse_model(model_path)
    rt = get_runtime(runtime)
    names = parse_request(request, profile_order)
    auto = any(n.lower() == AUTO for n in names)
    report = SelectionReport(request=names, runtime=rt.info())
    candidates = _candidates(names, auto, threads, delegate_options, profile_delegates, profile_order, thread_counts)
    settings = ProbeSettings(
        model=str(model_path),
        runtime=rt.name,
        profile_delegates=_plain(profile_delegates),
        tolerance=tolerance if tolerance is not None else TOLERANCES["fp32"],
        check_accuracy=check_accuracy,
        check_speed=check_speed and not auto,
        stop_at_first=not auto,
        auto_budget_s=auto_budget_s,
        slower_margin=slower_margin,
    )
    runnable = []
    for choice in candidates:
        blocked = _precheck(choice, model, profile_delegates)
        if blocked is not None:
            report.attempts.append(blocked)
        else:
            runnable.append(choice)
    base = tolerance if tolerance is not None else _variant_tolerance(model)
    tolerances = {c.key: base if tolerance is not None else _tolerance_for(c, base) for c in runnable}
    if trial is not None and not auto:
        _in_order(report, runnable, settings, tolerances, trial, isolate, timeout_s)
    else:
        _probe(report, runnable, settings, tolerances, auto, isolate, timeout_s)
    _decide(report, auto, {c.key: c for c in candidates})
    report.warnings += _warnings(report, rt, model, candidates)
    return report


def load_interpreter(
    model_path: Any, delegates: Any = None, threads: int | None = None, **kwargs: Any
) -> tuple[Any, SelectionReport]:
    """Select (in a probe child) and then open the chosen configuration here: (ModelRunner, report)."""
    from delegates.model_runner import open_model

    report = select_delegate(model_path, delegates, threads=threads, **kwargs)
    runner = open_model(
        model_path, report.choice, runtime=kwargs.get("runtime"), profile_delegates=kwargs.get("profile_delegates")
    )
    return runner, report


# --- candidates -------------------------------------------------------------------------------------------


def _candidates(
    names: list[str],
    auto: bool,
    threads: int | None,
    delegate_options: dict[str, dict[str, Any]] | None,
    profile_delegates: dict[str, Any] | None,
    profile_order: list[str] | None,
    thread_counts: list[int] | None,
) -> list[DelegateChoice]:
    if auto:
        pool = [n for n in names if n.lower() != AUTO] or list(profile_order or auto_pool())
        pool += [n for n in (XNNPACK, CPU) if n not in pool]
        counts = [threads] if threads else (thread_counts or default_thread_counts())
    else:
        pool = names + [n for n in (XNNPACK, CPU) if n not in names]
        counts = [threads]
    out: list[DelegateChoice] = []
    for name in pool:
        base = parse_choice(name)
        options = dict((delegate_options or {}).get(name) or (delegate_options or {}).get(base.label) or {})
        for count in _counts_for(base, counts):
            choice = as_choice(base, threads=count, options=options)
            if choice.key not in {c.key for c in out}:
                out.append(choice)
    return out


def _counts_for(choice: DelegateChoice, counts: list[int | None]) -> list[int | None]:
    # Accelerators run on their own hardware: the CPU thread count only matters for the leftovers.
    if choice.delegate in (CPU, XNNPACK) or get_spec(choice.delegate).threads_option:
        return counts
    return [max((c for c in counts if c), default=None)]


def auto_pool() -> list[str]:
    """Delegates worth trying on this machine: those whose library is found, then XNNPACK and CPU."""
    from delegates.registry import SPECS, find_library

    found = []
    for name, spec in SPECS.items():
        if spec.loader != "builtin" and name != "external" and spec.library_names() and find_library(spec).found:
            found.append(name)
    return [*found, XNNPACK, CPU]


def default_thread_counts() -> list[int]:
    """1, half the cores and all the cores (deduplicated)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return sorted({1, max(1, cores // 2), cores})


# --- checks without native code --------------------------------------------------------------------------


def _precheck(choice: DelegateChoice, model: TFLiteModel, profile_delegates: dict[str, Any] | None) -> Attempt | None:
    """not_found / rejected decided from files and the model structure alone."""
    key = {"key": choice.key, "threads": choice.threads}
    effective_options(choice, profile_delegates)  # a typo'd option is the user's error: raise it now
    if choice.delegate in (CPU, XNNPACK):
        return None
    lookup = locate(choice, profile_delegates)
    if not lookup.found:
        spec = get_spec(choice.delegate)
        names = ", ".join(spec.library_names()) or f"none for this platform (exists on {', '.join(spec.libraries)})"
        where = choice.library or names
        return Attempt(
            choice.label, "not_found", f"library not found: {where}", {**key, "searched": list(lookup.searched[:8])}
        )
    problem = compat.requirement_problem(get_spec(choice.delegate), model)
    if problem:
        return Attempt(choice.label, "rejected", problem, key)
    return None


def _variant_tolerance(model: TFLiteModel) -> float:
    from delegates.metadata import read_metadata
    from delegates.model_runner import is_integer_model

    try:
        variant = (read_metadata(model) or {}).get("variant")
    except ToolkitError:
        variant = None
    if variant not in TOLERANCES:
        variant = "int8" if is_integer_model(model) else "fp32"
    return TOLERANCES[variant]


def _tolerance_for(choice: DelegateChoice, base: float) -> float:
    options = choice.options_dict()
    if any(options.get(key) == value for name, key, value in REDUCED_PRECISION if name == choice.delegate):
        return max(base, TOLERANCES["fp16"])
    if choice.delegate == "gpu" and "precision" not in options:
        return max(base, TOLERANCES["fp16"])  # the GPU delegate defaults to fp16 (as benchmark_model)
    return base


# --- probing in a child ---------------------------------------------------------------------------------------


def _probe(
    report: SelectionReport,
    candidates: list[DelegateChoice],
    settings: ProbeSettings,
    tolerances: dict[str, float],
    auto: bool,
    isolate: bool,
    timeout_s: float,
) -> None:
    """Try candidates until one is acceptable (all of them in auto mode, then race the viable).

    A crash settles the candidate it happened in; a fresh child continues with the rest.
    """
    remaining = list(candidates)
    crashed_once = False
    while remaining:
        request = _request(settings, remaining, tolerances, race=auto and not crashed_once)
        events, crash = _run_child(request, timeout_s) if isolate else _run_inline(request)
        done = _absorb(report, remaining, events, crash)
        if not auto and any(a.outcome in ACCEPTABLE for a in report.attempts):
            return
        crashed_once = crashed_once or crash is not None
        remaining = remaining[done:]
    if auto and crashed_once:
        viable = [c for c in candidates if _outcome_of(report, c.key) in ACCEPTABLE]
        if len(viable) > 1:
            request = {**_request(settings, viable, tolerances, race=True), "race_only": True}
            events, crash = _run_child(request, timeout_s) if isolate else _run_inline(request)
            _absorb(report, viable, events, crash)


def _in_order(
    report: SelectionReport,
    candidates: list[DelegateChoice],
    settings: ProbeSettings,
    tolerances: dict[str, float],
    trial: Trial,
    isolate: bool,
    timeout_s: float,
) -> None:
    """Preference order: each run of built-in candidates checked in place, the others probed."""
    for builtin, group in itertools.groupby(candidates, key=lambda c: c.delegate in BUILTIN):
        batch = list(group)
        if builtin:
            _check_in_place(report, batch, settings, tolerances, trial)
        else:
            _probe(report, batch, settings, tolerances, False, isolate, timeout_s)
        if any(a.outcome in ACCEPTABLE for a in report.attempts):
            return


def _check_in_place(
    report: SelectionReport,
    batch: list[DelegateChoice],
    settings: ProbeSettings,
    tolerances: dict[str, float],
    trial: Trial,
) -> None:
    """Built-in candidates, in order, until one is acceptable; the trial measures each one it opens."""
    events: list[dict] = []
    for choice in batch:
        attempt = try_in_place(choice, trial, settings, events.append, tolerances[choice.key])
        if attempt["outcome"] in ACCEPTABLE:
            break
    _absorb(report, batch, events, None)


def _request(
    settings: ProbeSettings, batch: list[DelegateChoice], tolerances: dict[str, float], race: bool
) -> dict[str, Any]:
    wire = [{**c.to_dict(), "tolerance": tolerances[c.key]} for c in batch]
    return {"settings": dict(settings.__dict__), "candidates": wire, "race": race}


def _outcome_of(report: SelectionReport, key: str) -> str | None:
    return next((a.outcome for a in reversed(report.attempts) if a.details.get("key") == key), None)


def _absorb(report: SelectionReport, batch: list[DelegateChoice], events: list[dict], crash: str | None) -> int:
    """Turn protocol events into attempts; return how many candidates of the batch are settled."""
    by_key = {c.key: c for c in batch}
    settled: set[str] = set()
    current = None
    for event in events:
        kind = event.get("event")
        if kind == "current":
            current = event.get("key")
        elif kind == "attempt":
            details = {**event.get("details", {}), "key": event["key"]}
            report.attempts.append(Attempt(event["delegate"], event["outcome"], event.get("reason", ""), details))
            settled.add(event["key"])
        elif kind == "measured":
            report.measurements_ms.update(event.get("p50_ms", {}))
        elif kind == "reference_failed":
            message = event.get("error", {}).get("message", "unknown error")
            note = f"no CPU reference, accuracy not checked: {message}"
            if note not in report.warnings:
                report.warnings.append(note)
    if crash is None:
        return len(batch)
    if current == "reference":
        raise DelegateError(
            f"the plain CPU reference crashed the probe process ({crash})",
            "the model file or this runtime is broken; try another runtime with --runtime",
        )
    victim = by_key.get(current) or next((c for c in batch if c.key not in settled), None)
    if victim is None:
        return len(batch)
    details = {"key": victim.key, "threads": victim.threads}
    report.attempts = [a for a in report.attempts if a.details.get("key") != victim.key]
    report.attempts.append(Attempt(victim.label, "crashed", f"probe process died: {crash}", details))
    return batch.index(victim) + 1


def _run_inline(request: dict[str, Any]) -> tuple[list[dict], str | None]:
    events: list[dict] = []
    run_request(request, events.append)
    return events, None


def _run_child(request: dict[str, Any], timeout_s: float) -> tuple[list[dict], str | None]:
    """Start the probe child; return its events and, if it died, how."""
    import subprocess  # only here: in-place selection does without it

    argv = [sys.executable, "-c", BOOT, package_root()]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        out, err = proc.communicate(json.dumps(request), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return _events(out), f"timed out after {timeout_s:g} s"
    events = _events(out)
    if proc.returncode != 0 or not any(e.get("event") == "done" for e in events):
        return events, _death(proc.returncode, err)
    return events, None


def package_root() -> str:
    """The folder or zipapp holding the `delegates` package, for the child's sys.path."""
    import delegates

    # In a zipapp __file__ is /path/runner.pyz/delegates/__init__.py: the .pyz goes on sys.path.
    return str(Path(delegates.__file__).parent.parent)


def _events(out: str) -> list[dict]:
    events = []
    for line in (out or "").splitlines():
        if line.startswith(MARK):
            try:
                events.append(json.loads(line[len(MARK) :]))
            except json.JSONDecodeError:
                continue
    return events


def _death(returncode: int, stderr: str) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    tail = " | ".join(line.strip() for line in (stderr or "").strip().splitlines()[-3:])
    return f"exit code {returncode}" + (f": {tail[:300]}" if tail else "")


# --- decision ---------------------------------------------------------------------------------------------


def _decide(report: SelectionReport, auto: bool, by_key: dict[str, DelegateChoice]) -> None:
    viable = [a for a in report.attempts if a.outcome in ACCEPTABLE]
    if not viable:
        grouped: dict[tuple[str, str], list[str]] = {}
        for a in report.attempts:
            grouped.setdefault((a.outcome, a.reason), []).append(a.details.get("key", a.delegate))
        summary = "; ".join(f"{', '.join(keys)}: {outcome} ({reason})" for (outcome, reason), keys in grouped.items())
        raise DelegateError(
            f"no delegate could run this model: {summary[:500]}",
            "check the model with `edgetk inspect` and the runtime with `edgetk delegates`",
            attempts=[a.to_dict() for a in report.attempts],
        )
    if auto and report.measurements_ms:
        measured = [a for a in viable if a.details.get("key") in report.measurements_ms]
        best = min(measured or viable, key=lambda a: report.measurements_ms.get(a.details["key"], float("inf")))
        _mark_auto_losers(report, best, viable)
    else:
        best = viable[0]
    report.choice = by_key[best.details["key"]]


def _mark_auto_losers(report: SelectionReport, best: Attempt, viable: list[Attempt]) -> None:
    best_ms = report.measurements_ms.get(best.details["key"])
    for attempt in viable:
        if attempt is best:
            continue
        ms = report.measurements_ms.get(attempt.details["key"])
        if ms is None or best_ms is None:
            continue
        attempt.details["delegation_outcome"] = attempt.outcome
        attempt.outcome = "slower"
        attempt.reason = (
            f"p50 {ms:.3g} ms vs {best_ms:.3g} ms for {best.details['key']} (auto keeps the fastest); {attempt.reason}"
        )


def _warnings(report: SelectionReport, rt: Any, model: TFLiteModel, candidates: list[DelegateChoice]) -> list[str]:
    from delegates.model_runner import is_integer_model

    out = []
    if any(a.delegate == XNNPACK for a in report.attempts):
        out += runtime_warnings(rt, int8_model=is_integer_model(model), delegate=XNNPACK)
    if any(c.delegate == XNNPACK and "fp16" in c.options_dict() for c in candidates):
        out.append("xnnpack fp16 is honoured by benchmark_model only; the Python runtimes ignore it")
    return out


def _plain(profile_delegates: dict[str, Any] | None) -> dict[str, Any]:
    """Profile delegate entries as plain dicts (they cross into the probe child as JSON)."""
    out = {}
    for name, entry in (profile_delegates or {}).items():
        if hasattr(entry, "model_dump"):
            entry = entry.model_dump()
        out[name] = {k: v for k, v in dict(entry).items() if k in ("library", "options")}
    return out
