"""TFLite's `benchmark_model` binary: build its command line, parse its output into result fields.

Used by the adb runner mode (the user brings the binary; edgetk pushes it and runs it). The parser
knows the line formats of TF 2.4 through current builds, with or without `INFO:` prefixes and
logcat prefixes (the benchmark APK logs through logcat). Times printed in microseconds (averages
possibly in scientific notation) become milliseconds, memory printed in MB (MiB) becomes bytes.

    argv = benchmark_argv("/data/local/tmp/benchmark_model", "/data/local/tmp/m.tflite",
                          delegate="gpu", threads=4, settings={"num_runs": 100})
    parsed = parse_benchmark_output(stdout + stderr, exit_code)
    parsed.failure          # None, or a BenchmarkFailure with kind and reason
    parsed.result_sections() # {"timings": {...}, "memory": {...}, "delegation": {...}}

Stdlib only; the sections have the shapes of toolkit.results.Timings, Memory and Delegation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

US_PER_MS = 1000.0
BYTES_PER_MB = 1024 * 1024  # the tool prints max_rss_kb / 1024.0

# --- command line -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DelegateFlags:
    """How benchmark_model is told to use one delegate."""

    name: str
    flags: tuple[str, ...]


DELEGATE_FLAGS: dict[str, DelegateFlags] = {
    spec.name: spec
    for spec in (
        # XNNPACK is applied by default in recent builds: plain CPU has to switch it off.
        DelegateFlags("cpu", ("--use_xnnpack=false",)),
        DelegateFlags("xnnpack", ("--use_xnnpack=true",)),
        DelegateFlags("gpu", ("--use_gpu=true",)),
        DelegateFlags("nnapi", ("--use_nnapi=true",)),
        DelegateFlags("hexagon", ("--use_hexagon=true",)),
        DelegateFlags("external", ()),  # --external_delegate_path / _options, below
    )
}

# BenchmarkSettings field (toolkit/results.py) -> benchmark_model flag
SETTING_FLAGS: dict[str, str] = {
    "num_runs": "--num_runs",
    "min_s": "--min_secs",
    "max_s": "--max_secs",
    "warmup_runs": "--warmup_runs",
    "warmup_min_s": "--warmup_min_secs",
    "run_delay_s": "--run_delay",
}


def _flag_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def benchmark_argv(
    binary: str,
    graph: str,
    *,
    delegate: str | None = None,
    threads: int | None = None,
    settings: Mapping[str, Any] | Any | None = None,
    nnapi_accelerator_name: str | None = None,
    external_delegate_path: str | None = None,
    external_delegate_options: Mapping[str, Any] | None = None,
    extra_flags: Mapping[str, Any] | None = None,
) -> list[str]:
    """The argv that runs benchmark_model on graph with one delegate, thread count and run bounds.

    `settings` is a BenchmarkSettings (or a dict of its fields); fields benchmark_model has no flag
    for (adaptive, cooldown) are ignored. `run_delay_s` of 0 means no delay and adds no flag.
    """
    argv = [binary, f"--graph={graph}"]
    if threads is not None:
        argv.append(f"--num_threads={int(threads)}")
    argv += _delegate_flags(delegate, nnapi_accelerator_name, external_delegate_path, external_delegate_options)
    argv += _setting_flags(settings)
    argv += [f"--{key.lstrip('-')}={_flag_value(value)}" for key, value in (extra_flags or {}).items()]
    return argv


def _delegate_flags(
    delegate: str | None,
    accelerator: str | None,
    external_path: str | None,
    external_options: Mapping[str, Any] | None,
) -> list[str]:
    if delegate is None:
        return []
    spec = DELEGATE_FLAGS.get(delegate)
    if spec is None:
        from toolkit.errors import ConfigError

        raise ConfigError(
            f"benchmark_model has no delegate {delegate!r}",
            f"use one of: {', '.join(sorted(DELEGATE_FLAGS))}",
        )
    flags = list(spec.flags)
    if delegate == "nnapi" and accelerator:
        flags.append(f"--nnapi_accelerator_name={accelerator}")
    if delegate == "external":
        if not external_path:
            from toolkit.errors import ConfigError

            raise ConfigError("the external delegate needs its library path", "set external_delegate_path")
        flags.append(f"--external_delegate_path={external_path}")
        if external_options:
            joined = ";".join(f"{k}:{_flag_value(v)}" for k, v in external_options.items())
            flags.append(f"--external_delegate_options={joined}")
    return flags


def _setting_flags(settings: Mapping[str, Any] | Any | None) -> list[str]:
    if settings is None:
        return []
    values = settings if isinstance(settings, Mapping) else settings.model_dump()
    flags = []
    for name, flag in SETTING_FLAGS.items():
        value = values.get(name)
        if value is None or (name == "run_delay_s" and not value):
            continue
        flags.append(f"{flag}={_flag_value(value)}")
    return flags


# --- output parsing ---------------------------------------------------------------------------

_NUMBER = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# logcat: "07-14 13:23:08.133 25289 25289 I tflite  : message"
_LOGCAT_PREFIX = re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?\s*:\s?")
# TFLite's own severity prefix: "INFO: message"
_SEVERITY_PREFIX = re.compile(r"^(?:INFO|VERBOSE|WARNING|ERROR|DEBUG): ")

_STATS_LINE = re.compile(r"^count=(\d+)\b(.*)$")
_STAT_FIELD = re.compile(rf"(\w+)=({_NUMBER})")
_SUMMARY = re.compile(
    rf"Inference timings in us: Init: ({_NUMBER}), First inference: ({_NUMBER}), "
    rf"Warmup \(avg\): ({_NUMBER}), Inference \(avg\): ({_NUMBER})"
)
_SESSION = re.compile(rf"Initialized session in ({_NUMBER}) ?ms")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): ({_NUMBER})")
# "Peak memory footprint" is the TF <= 2.4 name of the same numbers as "Memory footprint delta".
_MEMORY_DELTA = re.compile(
    rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): "
    rf"init=({_NUMBER}) overall=({_NUMBER})"
)
_PEAK_MEMORY = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUMBER})")
_REPLACING = re.compile(
    r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]+)\) node, yielding (\d+) partitions?"
    r"(?: for (.+?))?\.?$"
)


@dataclass(frozen=True)
class FailureKind:
    """A way benchmark_model fails, recognized by a line of its output."""

    kind: str  # delegate_failed | model_failed | runtime_failed
    pattern: re.Pattern[str]


FAILURE_KINDS: tuple[FailureKind, ...] = (
    FailureKind("delegate_failed", re.compile(r"Failed to apply (\S+) delegate", re.IGNORECASE)),
    FailureKind(
        "model_failed",
        re.compile(r"Failed to (?:mmap|load|read) model|Could not (?:open|build|load) model|not a valid", re.I),
    ),
    FailureKind("runtime_failed", re.compile(r"Failed to (?:allocate tensors|invoke)|Node number \d+ .* failed", re.I)),
)


@dataclass(frozen=True)
class BenchmarkFailure:
    """Why a benchmark_model run produced no result."""

    kind: str  # delegate_failed | model_failed | runtime_failed | benchmark_failed | incomplete
    reason: str  # one line for people
    delegate: str | None = None  # for delegate_failed: the delegate benchmark_model named
    errors: tuple[str, ...] = ()  # the ERROR lines before the failure, most specific first

    def to_error(self) -> Exception:
        """The ToolkitError this failure stands for."""
        from toolkit.errors import BadInputError, DelegateError, RunnerCrashedError

        detail = f": {self.errors[0]}" if self.errors else ""
        if self.kind == "delegate_failed":
            return DelegateError(
                f"benchmark_model could not apply the {self.delegate or 'requested'} delegate{detail}",
                "the delegate rejected the model; try another delegate or accelerator, or CPU",
                failure=self.kind,
            )
        if self.kind == "model_failed":
            return BadInputError(f"benchmark_model could not load the model{detail}", "check the model file")
        return RunnerCrashedError(f"benchmark_model failed: {self.reason}{detail}", failure=self.kind)


@dataclass
class BenchmarkOutput:
    """Everything parsed from one benchmark_model run (times in ms, memory in bytes)."""

    timings: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    delegation: dict[str, Any] = field(default_factory=dict)
    percentiles_ms: dict[str, float] = field(default_factory=dict)  # p5/p50/p95 when printed
    delegates: list[str] = field(default_factory=list)  # delegate kernels named in "Replacing" lines
    session_init_ms: float | None = None
    model_size_mb: float | None = None
    failure: BenchmarkFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def result_sections(self) -> dict[str, dict[str, Any]]:
        """The `timings`, `memory` and `delegation` sections of a result document."""
        return {"timings": dict(self.timings), "memory": dict(self.memory), "delegation": dict(self.delegation)}


def clean_line(line: str) -> str:
    """A log line without its logcat and severity prefixes and trailing whitespace."""
    line = _LOGCAT_PREFIX.sub("", line.rstrip())
    return _SEVERITY_PREFIX.sub("", line)


def parse_benchmark_output(text: str, exit_code: int | None = 0) -> BenchmarkOutput:
    """Parse benchmark_model's combined stdout and stderr; never raises on unknown lines."""
    raw_lines = text.splitlines()
    lines = [clean_line(raw) for raw in raw_lines]
    out = BenchmarkOutput()
    stats = [_stats(m.group(1), m.group(2)) for m in map(_STATS_LINE.match, lines) if m]
    out.timings = _timings(lines, stats)
    out.percentiles_ms = _percentiles(stats[-1] if stats else {})
    out.memory = _memory(lines)
    out.delegation, out.delegates = _delegation(lines)
    out.session_init_ms = _first_number(_SESSION, lines)
    out.model_size_mb = _first_number(_MODEL_SIZE, lines)
    errors = _error_lines(raw_lines)
    out.failure = _failure(lines, errors, exit_code, has_summary=_find(_SUMMARY, lines) is not None)
    return out


def _find(pattern: re.Pattern[str], lines: Sequence[str]) -> re.Match[str] | None:
    for line in lines:
        match = pattern.search(line)
        if match:
            return match
    return None


def _first_number(pattern: re.Pattern[str], lines: Sequence[str]) -> float | None:
    match = _find(pattern, lines)
    return float(match.group(1)) if match else None


def _stats(count: str, rest: str) -> dict[str, float]:
    values = {name: float(value) for name, value in _STAT_FIELD.findall(rest)}
    values["count"] = float(count)
    return values


def _ms(value_us: float | None) -> float | None:
    # The tool prints whole microseconds (or 6 significant digits): more decimals are float noise.
    return None if value_us is None else round(value_us / US_PER_MS, 6)


def _timings(lines: Sequence[str], stats: list[dict[str, float]]) -> dict[str, Any]:
    """Timings fields: the last `count=` line is the timed runs, an earlier one the warmup."""
    timings: dict[str, Any] = {}
    summary = _find(_SUMMARY, lines)
    if summary:
        init, first, warmup, mean = (float(g) for g in summary.groups())
        timings.update(init=_ms(init), first=_ms(first), warmup_mean=_ms(warmup), mean=_ms(mean))
    else:
        session = _first_number(_SESSION, lines)
        if session is not None:
            timings["init"] = session
    if stats:
        steady = stats[-1]
        timings["count"] = int(steady["count"])
        for name, key in (("min", "min"), ("max", "max"), ("std", "std"), ("mean", "avg"), ("p50", "median")):
            if key in steady:
                timings.setdefault(name, _ms(steady[key]))
        if len(stats) > 1:
            timings["warmup_runs"] = int(stats[0]["count"])
    return timings


def _percentiles(steady: dict[str, float]) -> dict[str, float]:
    names = {"p5": "p5", "median": "p50", "p95": "p95"}
    return {label: _ms(steady[key]) for key, label in names.items() if key in steady}


def _memory(lines: Sequence[str]) -> dict[str, Any]:
    memory: dict[str, Any] = {}
    delta = _find(_MEMORY_DELTA, lines)
    if delta:
        memory["delta_bytes"] = round(float(delta.group(2)) * BYTES_PER_MB)
    peak = _first_number(_PEAK_MEMORY, lines)
    if peak is not None:
        memory["peak_rss_bytes"] = round(peak * BYTES_PER_MB)
    if memory:
        memory["source"] = "benchmark_model"
    return memory


def _delegation(lines: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Delegated/total nodes and partitions summed over the `Replacing ...` lines (one per subgraph)."""
    delegated = partitions = 0
    totals: dict[str, int] = {}
    names: list[str] = []
    for match in filter(None, map(_REPLACING.search, lines)):
        nodes, total, name, parts, where = match.groups()
        delegated += int(nodes)
        partitions += int(parts)
        totals.setdefault(where or "graph", int(total))  # a second delegate sees a smaller graph
        if name not in names:
            names.append(name)
    if not names:
        return {}, []
    return {"delegated_nodes": delegated, "total_nodes": sum(totals.values()), "partitions": partitions}, names


def _failure(
    lines: Sequence[str], errors: tuple[str, ...], exit_code: int | None, has_summary: bool
) -> BenchmarkFailure | None:
    failed = any(line.strip() == "Benchmarking failed." for line in lines)
    if not failed and has_summary and not exit_code:
        return None
    for failure in FAILURE_KINDS:
        match = _find(failure.pattern, lines)
        if match:
            delegate = match.group(1) if failure.kind == "delegate_failed" else None
            return BenchmarkFailure(failure.kind, match.group(0).rstrip(".") + ".", delegate, errors)
    if failed:
        return BenchmarkFailure("benchmark_failed", "benchmark_model printed 'Benchmarking failed.'", None, errors)
    if exit_code:
        return BenchmarkFailure("benchmark_failed", f"benchmark_model exited with {exit_code}", None, errors)
    return BenchmarkFailure("incomplete", "the output has no 'Inference timings' summary", None, errors)


def _error_lines(raw_lines: Sequence[str]) -> tuple[str, ...]:
    """The ERROR messages in order (the first usually names the cause), minus generic follow-ups."""
    found = []
    for raw in raw_lines:
        line = _LOGCAT_PREFIX.sub("", raw.rstrip())
        if line.startswith("ERROR: "):
            message = line[len("ERROR: ") :].strip()
            if message and not message.startswith("Restored original execution plan"):
                found.append(message)
    return tuple(found)
