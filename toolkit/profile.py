"""Profile one model on one device: deploy the runner, measure there, return one result document.

    from toolkit.profile import ProfileRequest, profile_model
    result = profile_model(ProfileRequest("model.int8.tflite", device="ssh://pi@raspberrypi.local",
                                          profile="rpi5", delegates=("xnnpack",), threads=4))

`profile_model(request, transport=None) -> dict` is the contract the farm calls (docs/internals.md,
"Profiling"): it returns a document validated by `toolkit.results.Result`, or raises a
ToolkitError subclass (transient ones have `.transient = True`). Pass an open transport to reuse a
device connection across calls; otherwise one is opened and closed here.

Two runner modes, chosen per request: `python` ships runner.pyz (cached on the device by content
hash, like the model) and runs it with the device's Python; `benchmark_model` pushes TFLite's
benchmark_model binary and parses its output into the same schema.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import posixpath
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from toolkit.errors import (
    BadInputError,
    ConfigError,
    DeviceSetupError,
    RunnerCrashedError,
    ToolkitError,
    error_from_dict,
)
from toolkit.results import SCHEMA, BenchmarkSettings, JobInfo, validate_result

DEFAULT_DELEGATES = ("xnnpack",)
# Time on top of the measurement budget for runtime import, selection probes, init and parity.
TIMEOUT_MARGIN_S = 300.0
# The transport waits this much longer than the runner's own timeout, so the runner reports first.
TRANSPORT_GRACE_S = 30.0
PROBE_TIMEOUT_S = 60.0
CLEANUP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ProfileRequest:
    """What to measure, where and how: one cell of a farm matrix or one `edgetk profile` call."""

    model: str | os.PathLike[str]
    device: str = "local"  # local, ssh://user@host:port, an ssh_config alias, adb://SERIAL
    device_name: str | None = None  # a farm device's name; defaults to the URI
    profile: str | None = None  # device profile name or YAML path (profiles/*.yaml)
    delegates: tuple[str, ...] = ()  # preference order, or ("auto",); () = the profile's order, else xnnpack
    delegate_options: Mapping[str, Any] = field(default_factory=dict)
    threads: int | None = None  # None = the profile's largest thread count, else the runtime default
    settings: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    inputs: str | os.PathLike[str] | None = None  # .npy/.npz in the source layout; None = random
    seed: int = 0  # for random inputs
    runtime: str | None = None  # ai_edge_litert | tflite_runtime | tensorflow; None = the device's first
    runner: str | None = None  # "python" | "benchmark_model"; None = benchmark_model if a binary is given
    benchmark_model: str | os.PathLike[str] | None = None  # local path of TFLite's benchmark_model binary
    python: str | None = None  # the device's Python; None = transport option, then profile, then python3
    transport_options: Any = None  # dict or SshOptions/AdbOptions/LocalOptions, when no transport is passed
    parity: bool = True  # compare outputs with the plain CPU reference on the device
    timeout_s: float | None = None  # whole-measurement timeout on the device; None = from the settings
    job: JobInfo | Mapping[str, Any] | None = None  # set by the farm


@dataclass(frozen=True)
class ModelFile:
    """The model as the controller sees it."""

    path: Path
    sha256: str
    size: int
    metadata: dict[str, Any] | None

    def info(self) -> dict[str, Any]:
        meta = self.metadata or {}
        return {
            "path": str(self.path),
            "name": self.path.name,
            "sha256": self.sha256,
            "size_bytes": self.size,
            "variant": meta.get("variant"),
            "source_sha256": (meta.get("source") or {}).get("sha256"),
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Plan:
    """A request resolved against the device profile and the transport."""

    delegates: tuple[str, ...]  # as asked; () lets selection use the profile's order (else xnnpack)
    profile_order: tuple[str, ...]
    thread_counts: tuple[int, ...]  # what `auto` may try
    threads: int | None
    runtime: str | None
    runner: str
    python: str
    env: dict[str, str]  # extra environment for the runner on the device (profile runner.env)
    local_binary: Path | None  # benchmark_model to push
    device_binary: str | None  # benchmark_model already on the device (profile runner.benchmark_model)
    taskset: str | None
    thermal_zones: tuple[str, ...]
    profile_delegates: dict[str, Any]
    profile_name: str | None
    workdir: str
    timeout_s: float


# --- local files ----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a local file (cached per path, size and mtime)."""
    stat = path.stat()
    return _sha256_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_file(path: str | os.PathLike[str]) -> ModelFile:
    """Hash, size and edgetk metadata of a .tflite file; BadInputError if it is not one."""
    model = Path(path).expanduser()
    if not model.is_file():
        raise BadInputError(f"{model}: no such model file", "give the path of a .tflite file")
    stat = model.stat()
    if stat.st_size == 0:
        raise BadInputError(f"{model}: the file is empty", "re-run the conversion that produced it")
    try:
        metadata = _metadata_cached(str(model.resolve()), stat.st_size, stat.st_mtime_ns)
    except ToolkitError as error:
        raise BadInputError(f"{model}: not a valid .tflite model ({error.message})", "re-run the conversion") from error
    return ModelFile(model, sha256_file(model), stat.st_size, copy.deepcopy(metadata))


@lru_cache(maxsize=256)
def _metadata_cached(path: str, size: int, mtime_ns: int) -> dict[str, Any] | None:
    """A farm profiles one file many times: parse its flatbuffer once per (path, size, mtime)."""
    from delegates.metadata import read_metadata

    return read_metadata(path)


# --- planning -------------------------------------------------------------------------------------


def load_profile_or_none(name: str | None) -> Any:
    """The validated device profile (toolkit.device_profiles), or None when no name is given."""
    if not name:
        return None
    from toolkit.device_profiles import load_profile

    return load_profile(name)


def default_timeout(settings: BenchmarkSettings) -> float:
    """Warmup and timed runs can each take max_s; add cooldown and a margin for everything else."""
    cooldown = settings.cooldown_max_s if settings.cooldown_below_c is not None else 0.0
    return 2 * settings.max_s + cooldown + TIMEOUT_MARGIN_S


def _explicit(transport: Any, name: str) -> bool:
    """True if the transport's options set `name` on purpose (a default does not count)."""
    options = getattr(transport, "options", None)
    return name in (getattr(options, "model_fields_set", None) or ())


def resolve_workdir(transport: Any, profile: Any) -> str:
    """The device folder: explicit transport option, else the profile's (remote devices), else the transport's."""
    if profile is None or transport.kind == "local" or _explicit(transport, "workdir"):
        return transport.workdir
    raw = profile.runner.workdir
    if raw.startswith("~/"):
        raw = raw[2:]  # remote paths are quoted, so `~` would not expand: relative means under home
    absolute = getattr(transport, "absolute", None)
    return absolute(raw) if absolute and not posixpath.isabs(raw) else raw


def resolve_python(request: ProfileRequest, transport: Any, profile: Any) -> str:
    """--python, then the transport option, then the profile (remote devices only), then the transport's default."""
    if request.python:
        return request.python
    if _explicit(transport, "python") or transport.kind == "local" or profile is None:
        return getattr(transport, "python", None) or "python3"
    return profile.runner.python


def _runner_mode(request: ProfileRequest, profile: Any) -> str:
    if request.runner:
        mode = request.runner
    elif request.benchmark_model:
        mode = "benchmark_model"
    else:
        mode = profile.runner.mode if profile is not None else "python"
    if mode not in RUNNER_MODES:
        raise ConfigError(f"unknown runner {mode!r}", f"use one of {', '.join(RUNNER_MODES)}")
    return mode


def plan_run(request: ProfileRequest, profile: Any, transport: Any) -> Plan:
    """Resolve what the request leaves open from the profile, the transport and the defaults."""
    mode = _runner_mode(request, profile)
    device_binary = profile.runner.benchmark_model if profile is not None else None
    local_binary = Path(request.benchmark_model).expanduser() if request.benchmark_model else None
    if mode == "benchmark_model" and not (local_binary or device_binary):
        raise ConfigError(
            "the benchmark_model runner needs the binary",
            "pass --benchmark-model PATH (TFLite's benchmark_model built for the device) "
            "or set runner.benchmark_model in the device profile",
        )
    thread_counts = tuple(profile.threads) if profile is not None else ()
    return Plan(
        delegates=tuple(request.delegates),
        profile_order=tuple(profile.preferred_delegates) if profile is not None else (),
        thread_counts=thread_counts,
        # One profile call measures one configuration: the profile's largest useful thread count.
        threads=request.threads if request.threads is not None else (max(thread_counts) if thread_counts else None),
        runtime=request.runtime or (profile.runtime if profile is not None else None),
        runner=mode,
        python=resolve_python(request, transport, profile),
        env=dict(profile.runner.env) if profile is not None else {},
        local_binary=local_binary,
        device_binary=None if local_binary else device_binary,
        taskset=profile.runner.taskset if profile is not None else None,
        thermal_zones=tuple(profile.thermal_zones) if profile is not None else (),
        profile_delegates=profile.delegate_settings() if profile is not None else {},
        profile_name=profile.name if profile is not None else None,
        workdir=resolve_workdir(transport, profile),
        timeout_s=float(request.timeout_s) if request.timeout_s else default_timeout(request.settings),
    )


def transport_options_for(request: ProfileRequest, profile: Any) -> Any:
    """The request's transport options, with the profile's ssh settings where the request has none."""
    options = request.transport_options
    if profile is None or (options is not None and not isinstance(options, Mapping)):
        return options
    from toolkit.transports import transport_kind

    merged = dict(options or {})
    if transport_kind(request.device) == "ssh":
        if profile.runner.accept_new_host_key:
            merged.setdefault("accept_new_host_key", True)
        merged.setdefault("connect_timeout_s", max(1, round(profile.runner.connect_timeout_s)))
    return merged or None


# --- the python runner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteLayout:
    """Where edgetk keeps its files on a device (cache by content hash, one folder per run)."""

    workdir: str

    def runner(self, sha256: str) -> str:
        return posixpath.join(self.workdir, "runner", f"runner-{sha256}.pyz")

    def model(self, sha256: str, name: str) -> str:
        # The hash names the folder; the file keeps its name, so device-side errors name the model.
        return posixpath.join(self.workdir, "models", sha256, _safe_name(name))

    def inputs(self, sha256: str, suffix: str) -> str:
        return posixpath.join(self.workdir, "inputs", f"{sha256}{suffix}")

    def binary(self, sha256: str) -> str:
        return posixpath.join(self.workdir, "bin", f"benchmark_model-{sha256[:16]}")

    def run_folder(self, run_id: str) -> str:
        return posixpath.join(self.workdir, "runs", run_id)

    def folders(self, model_folder: str) -> list[str]:
        return [posixpath.join(self.workdir, name) for name in ("runner", "inputs", "runs")] + [model_folder]


def _safe_name(name: str) -> str:
    """A file name that needs no quoting anywhere (adb shells are picky)."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return cleaned.lstrip(".") or "model.tflite"


def probe_device(transport: Any, plan: Plan, folders: list[str], paths: list[str]) -> dict[str, Any]:
    """Check the device's Python in one round trip; create the cache folders; report cached files."""
    from toolkit.runner.probe import PROBE_SCRIPT, parse_probe

    python = plan.python
    argument = json.dumps({"mkdirs": folders, "exists": paths})
    result = transport.run(
        [*_env_prefix(plan), python, "-c", PROBE_SCRIPT, argument], timeout=PROBE_TIMEOUT_S, check=False
    )
    report = parse_probe(result.stdout)
    if report is not None:
        return report
    if result.returncode in (126, 127) or "not found" in result.stderr.lower():
        raise DeviceSetupError(
            f"no Python at {python!r} on {transport.uri}",
            "install Python 3.9+ with numpy and a TFLite runtime on the device (e.g. apt install python3-numpy; "
            "pip install ai-edge-litert), or point --python / the profile's runner.python at one",
            stderr_tail=result.stderr[-2000:],
        )
    raise DeviceSetupError(
        f"{python!r} on {transport.uri} could not run edgetk's setup check (exit {result.returncode})",
        "the runner needs Python 3.9 or newer; check `python3 --version` on the device",
        stderr_tail=result.stderr[-2000:],
        stdout_tail=result.stdout[-2000:],
    )


def _runner_request(request: ProfileRequest, plan: Plan, paths: dict[str, Any], nonce: str) -> dict[str, Any]:
    return {
        "model": paths["model"],
        "inputs": paths["inputs"],
        "delegates": list(plan.delegates),
        "profile_order": list(plan.profile_order),
        "thread_counts": list(plan.thread_counts),
        "delegate_options": {name: dict(options) for name, options in request.delegate_options.items()},
        "profile_delegates": plan.profile_delegates,
        "threads": plan.threads,
        "runtime": plan.runtime,
        "settings": request.settings.model_dump(mode="json"),
        "thermal_zones": list(plan.thermal_zones),
        "seed": request.seed,
        "parity": request.parity,
        "rundir": paths["rundir"],
        "requires": [p for p in (paths["model"], paths["inputs"]) if p],
        "nonce": nonce,
        "timeout_s": plan.timeout_s,
    }


@dataclass
class DeviceState:
    """What this controller already knows about a device it holds a transport to (farm jobs reuse it)."""

    setups: dict[tuple, dict[str, Any]] = field(default_factory=dict)  # (python, runtime, env) -> probe report
    present: set[str] = field(default_factory=set)  # remote files known to exist (uploads are atomic)


_DEVICE_STATE: weakref.WeakKeyDictionary[Any, DeviceState] = weakref.WeakKeyDictionary()


class _StaleCache(Exception):
    """A file this controller believed cached on the device is gone."""


def _device_state(transport: Any) -> DeviceState:
    state = _DEVICE_STATE.get(transport)
    if state is None:
        state = _DEVICE_STATE[transport] = DeviceState()
    return state


def _remote_paths(request: ProfileRequest, plan: Plan, model: ModelFile) -> dict[str, Any]:
    from toolkit.runner.pack import build_runner

    package = build_runner()
    layout = RemoteLayout(plan.workdir)
    inputs = Path(request.inputs).expanduser() if request.inputs else None
    if inputs is not None and not inputs.is_file():
        raise BadInputError(f"{inputs}: no such inputs file", "give an .npy or .npz file in the source model's layout")
    runner = layout.runner(package.sha256)
    remote_model = layout.model(model.sha256, model.path.name)
    remote_inputs = layout.inputs(sha256_file(inputs), inputs.suffix.lower()) if inputs else None
    uploads = [(package.path, runner), (model.path, remote_model)]
    if inputs is not None:
        uploads.append((inputs, remote_inputs))
    return {
        "layout": layout,
        "uploads": uploads,
        "runner": runner,
        "model": remote_model,
        "inputs": remote_inputs,
        "rundir": layout.run_folder(uuid.uuid4().hex),
    }


def _ensure_deployed(transport: Any, plan: Plan, paths: dict[str, Any], state: DeviceState) -> list[str]:
    """Probe the device (unless this transport already knows it) and upload what is missing."""
    from toolkit.runner.probe import check_setup

    key = (plan.python, plan.runtime, tuple(sorted(plan.env.items())))
    remote = [target for _, target in paths["uploads"]]
    folders = paths["layout"].folders(posixpath.dirname(paths["model"]))
    if key not in state.setups:
        report = probe_device(transport, plan, folders, remote)
        check_setup(report, plan.python, plan.runtime)
        state.setups[key] = report
        state.present.update(p for p, there in report.get("exists", {}).items() if there)
    elif not all(p in state.present for p in remote):
        # Python and runtime already checked: a shell round trip makes the folders and says what is there
        # (starting the device's Python again costs a few hundred ms on a board).
        state.present.update(_prepare_remote(transport, folders, remote))
    uploads = []
    for local, target in paths["uploads"]:
        if target not in state.present:
            transport.push(str(local), target)
            state.present.add(target)
            uploads.append(target)
    return uploads


def run_python_runner(transport: Any, request: ProfileRequest, plan: Plan, model: ModelFile) -> dict[str, Any]:
    """Deploy runner.pyz, the model and inputs (each only if not cached), run, return the device document."""
    paths = _remote_paths(request, plan, model)
    state = _device_state(transport)
    for attempt in range(2):
        uploads = _ensure_deployed(transport, plan, paths, state)
        try:
            document = _run_runner(transport, plan, paths, request)
        except _StaleCache:
            if attempt:
                raise DeviceSetupError(
                    f"files uploaded to {transport.uri} disappeared again before the run",
                    "check that nothing on the device cleans the edgetk work folder while it runs",
                ) from None
            state.present.clear()
            state.setups.clear()
            continue
        document["uploads"] = uploads
        return document
    raise AssertionError("unreachable")  # pragma: no cover


def _run_runner(transport: Any, plan: Plan, paths: dict[str, Any], request: ProfileRequest) -> dict[str, Any]:
    from toolkit.runner.protocol import encode_request, unframe

    nonce = uuid.uuid4().hex
    token = encode_request(_runner_request(request, plan, paths, nonce))
    argv = [*_env_prefix(plan), plan.python, paths["runner"], "profile", token]
    finished = False
    try:
        result = transport.run(argv, timeout=plan.timeout_s + TRANSPORT_GRACE_S, check=False)
        document = unframe(result.stdout, nonce)
        finished = document is not None and document.get("rundir_removed", False)
    finally:
        if not finished:
            _remove_quietly(transport, paths["rundir"])
    if document is None and result.returncode == 2 and "can't open file" in result.stderr:
        raise _StaleCache(paths["runner"])  # python could not find runner.pyz
    if document is None:
        raise _no_document_error(result, transport.uri)
    if "missing" in document:
        raise _StaleCache(", ".join(document["missing"]))
    if "error" in document:
        raise error_from_dict(document["error"])
    document["runner_log_tail"] = result.stderr[-4000:]
    return document


def _env_prefix(plan: Plan) -> list[str]:
    """`env K=V ...` before the command when the profile sets runner.env (e.g. LD_LIBRARY_PATH)."""
    return ["env", *(f"{k}={v}" for k, v in sorted(plan.env.items()))] if plan.env else []


def _remove_quietly(transport: Any, path: str) -> None:
    """Best effort: a device that just failed may not answer."""
    try:
        transport.run(["rm", "-rf", "--", path], timeout=CLEANUP_TIMEOUT_S, check=False)
    except ToolkitError:
        pass


def _no_document_error(result: Any, uri: str) -> ToolkitError:
    """The runner said nothing we can read: it (or its interpreter) died, or the command never ran."""
    from toolkit.runner.supervisor import crashed

    code = result.returncode
    if code < 0:
        return crashed(-code, result.stderr[-2000:])
    if 128 < code < 128 + 65:
        return crashed(code - 128, result.stderr[-2000:])
    if code in (126, 127):
        return DeviceSetupError(f"the runner could not be started on {uri} (exit {code})", result.stderr.strip()[-300:])
    hint = "run with --debug to see the device's output"
    if code == 255:
        # What ssh says when the remote shell itself died (the runner's own status never came).
        hint = "over ssh, 255 without a status means the runner's shell was killed (e.g. by the OOM killer); " + hint
    return RunnerCrashedError(
        f"the runner on {uri} exited with {code} without a result",
        hint,
        returncode=code,
        stderr_tail=result.stderr[-2000:],
        stdout_tail=result.stdout[-2000:],
    )


# --- the benchmark_model runner -------------------------------------------------------------------

# One round trip, `sh -c PREPARE_SCRIPT sh FOLDER... -- FILE...`: make the folders, say which files exist.
PREPARE_SCRIPT = (
    'for d in "$@"; do shift; [ "$d" = -- ] && break; mkdir -p "$d"; done; '
    'for f in "$@"; do [ -e "$f" ] && echo "have $f"; done; true'
)
# benchmark_model timed on the device, around its run, by the shell: the kernel's uptime (10 ms
# resolution) before and after, read with builtins only (no `date` process, no %N needed).
UPTIME_MARK = "@@edgetk-uptime"
TIMED_SCRIPT = (
    "read a _ < /proc/uptime 2>/dev/null; "
    '"$@"; s=$?; '
    "read b _ < /proc/uptime 2>/dev/null; "
    f'echo "{UPTIME_MARK} $a $b" >&2; exit $s'
)
DUMP_SEPARATOR = "@@edgetk-sysfs"

# Delegate options benchmark_model understands: (delegate, option) -> (flag, value mapping or None).
BENCHMARK_OPTION_FLAGS: dict[tuple[str, str], tuple[str, dict[str, str] | None]] = {
    ("gpu", "precision"): ("gpu_precision_loss_allowed", {"fp16": "true", "fp32": "false"}),
    ("gpu", "backend"): ("gpu_backend", None),
    ("nnapi", "execution_preference"): ("nnapi_execution_preference", None),
    ("nnapi", "allow_fp16"): ("nnapi_allow_fp16", None),
}


def _prepare_remote(transport: Any, folders: Sequence[str], paths: Sequence[str]) -> set[str]:
    """Create `folders` on the device and return which of `paths` exist, in one shell round trip."""
    result = transport.run(["sh", "-c", PREPARE_SCRIPT, "sh", *folders, "--", *paths], timeout=PROBE_TIMEOUT_S)
    return {line[len("have ") :] for line in result.stdout.splitlines() if line.startswith("have ")}


def _device_facts(transport: Any) -> tuple[dict[str, Any], Any]:
    """Fingerprint and thermal snapshot of a device without Python, in one shell round trip."""
    from toolkit.runner.fingerprint import DUMP_SCRIPT, fingerprint, parse_dump
    from toolkit.runner.thermal import SYSFS_DUMP_SCRIPT, parse_sysfs_dump

    script = f"{DUMP_SCRIPT}; echo {DUMP_SEPARATOR}; {SYSFS_DUMP_SCRIPT}"
    out = transport.run(["sh", "-c", script], timeout=PROBE_TIMEOUT_S, check=False).stdout
    facts, _, sysfs = out.partition(DUMP_SEPARATOR)
    return fingerprint(parse_dump(facts)), parse_sysfs_dump(sysfs)


def _sysfs_snapshot(transport: Any) -> Any:
    from toolkit.runner.thermal import SYSFS_DUMP_SCRIPT, parse_sysfs_dump

    return parse_sysfs_dump(transport.run(["sh", "-c", SYSFS_DUMP_SCRIPT], timeout=PROBE_TIMEOUT_S).stdout)


def _benchmark_candidates(plan: Plan) -> list[str]:
    """benchmark_model tries one delegate per run: the request in order, `auto` as the profile's order."""
    profile_order = [n for n in plan.profile_order if n != "auto"] or list(DEFAULT_DELEGATES)
    out: list[str] = []
    for name in list(plan.delegates) or profile_order:
        for candidate in profile_order if name == "auto" else [name]:
            if candidate not in out:
                out.append(candidate)
    return out


def _delegate_flags(name: str, request: ProfileRequest, plan: Plan) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """benchmark_argv keywords and extra flags for one delegate, plus warnings for options it cannot pass."""
    from delegates.choice import parse_choice

    choice = parse_choice(name)
    options = {
        **(plan.profile_delegates.get(name) or {}).get("options", {}),
        **(request.delegate_options.get(name) or {}),
    }
    library = choice.library or (plan.profile_delegates.get(name) or {}).get("library")
    keywords: dict[str, Any] = {"delegate": choice.delegate}
    extra: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in options.items():
        if choice.delegate == "nnapi" and key == "accelerator_name":
            keywords["nnapi_accelerator_name"] = str(value)
        elif choice.delegate == "external":
            keywords.setdefault("external_delegate_options", {})[key] = value
        elif (choice.delegate, key) in BENCHMARK_OPTION_FLAGS:
            flag, mapping = BENCHMARK_OPTION_FLAGS[(choice.delegate, key)]
            text = str(value).lower() if isinstance(value, bool) else str(value)
            extra[flag] = mapping.get(text, text) if mapping else text
        else:
            warnings.append(f"benchmark_model has no flag for {name} option {key}={value}; not applied")
    if choice.delegate == "external":
        keywords["external_delegate_path"] = library
    return keywords, extra, warnings


@dataclass(frozen=True)
class BenchmarkRun:
    """One run of benchmark_model with one delegate."""

    parsed: Any  # toolkit.benchmark_model.BenchmarkOutput
    attempt: dict[str, Any]  # its selection attempt
    warnings: list[str]
    device_time_s: float | None  # the run timed on the device (uptime), else from its parsed timings


def _benchmark_attempt(
    transport: Any, request: ProfileRequest, plan: Plan, paths: dict[str, str], name: str
) -> BenchmarkRun:
    """Run benchmark_model once with one delegate."""
    from toolkit.benchmark_model import benchmark_argv, parse_benchmark_output

    keywords, extra, warnings = _delegate_flags(name, request, plan)
    argv = benchmark_argv(
        paths["binary"], paths["model"], threads=plan.threads, settings=request.settings, extra_flags=extra, **keywords
    )
    prefix = [*_env_prefix(plan), *(["taskset", plan.taskset] if plan.taskset else [])]
    timed = ["sh", "-c", TIMED_SCRIPT, "sh", *prefix, *argv]
    result = transport.run(timed, timeout=plan.timeout_s + TRANSPORT_GRACE_S, check=False)
    if result.returncode in (126, 127):
        raise DeviceSetupError(
            f"benchmark_model could not be started on {transport.uri} (exit {result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-200:]}",
            "check that the binary is built for the device's CPU (e.g. android_arm64) and that its folder allows execution",
        )
    parsed = parse_benchmark_output(result.stdout + "\n" + result.stderr, result.returncode)
    spent = _uptime_span(result.stderr)
    spent = spent if spent is not None else _parsed_time_s(parsed.timings)
    if parsed.failure is None:
        done, total = parsed.delegation.get("delegated_nodes"), parsed.delegation.get("total_nodes")
        outcome = "partial" if done is not None and total and done < total else "applied"
        reason = f"{done}/{total} nodes delegated" if done is not None else "benchmark_model ran"
        attempt = {"delegate": name, "outcome": outcome, "reason": reason, "details": {}}
        return BenchmarkRun(parsed, attempt, warnings, spent)
    failure = parsed.failure
    outcome = "failed_to_load" if failure.kind == "delegate_failed" else "rejected"
    details = {"failure": failure.kind, "errors": list(failure.errors)}
    attempt = {"delegate": name, "outcome": outcome, "reason": failure.reason, "details": details}
    return BenchmarkRun(parsed, attempt, warnings, spent)


def _uptime_span(stderr: str) -> float | None:
    """Seconds between the two uptime readings TIMED_SCRIPT printed; None without them."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(UPTIME_MARK):
            try:
                before, after = (float(x) for x in line.split()[1:3])
            except ValueError:
                return None
            return max(after - before, 0.0)
    return None


def _parsed_time_s(timings: dict[str, Any]) -> float | None:
    """Where the device gave no uptime: init + warmup + timed runs as the tool reports them."""
    parts = [
        timings.get("init"),
        (timings.get("warmup_mean") or 0.0) * (timings.get("warmup_runs") or 0),
        (timings.get("mean") or 0.0) * (timings.get("count") or 0),
    ]
    return sum(p for p in parts if p) / 1000.0 if any(parts) else None


def _benchmark_device_document(plan: Plan, parsed: Any, name: str, attempts: list, warnings: list) -> dict[str, Any]:
    timings = {**parsed.timings, "samples": []}
    for key in ("p5", "p50", "p95"):  # newer builds print p5/median/p95 on the count= line
        if timings.get(key) is None and key in parsed.percentiles_ms:
            timings[key] = parsed.percentiles_ms[key]
    delegation = dict(parsed.delegation)
    return {
        "delegate_request": list(plan.delegates) or list(plan.profile_order) or list(DEFAULT_DELEGATES),
        "config": {"delegate": name, "threads": plan.threads, "delegate_options": {}},
        "timings": timings,
        "memory": dict(parsed.memory),
        "delegation": delegation,
        "selection": {"chosen": name, "attempts": attempts, "measurements_ms": {}},
        "parity": None,
        "warnings": warnings,
    }


def run_benchmark_model(transport: Any, request: ProfileRequest, plan: Plan, model: ModelFile) -> dict[str, Any]:
    """Push TFLite's benchmark_model (if given locally) and the model; run it; parse its output."""
    layout = RemoteLayout(plan.workdir)
    binary = plan.device_binary or layout.binary(sha256_file(plan.local_binary))
    paths = {"binary": binary, "model": layout.model(model.sha256, model.path.name)}
    have = _prepare_remote(
        transport, (posixpath.dirname(paths["model"]), posixpath.dirname(binary)), [binary, paths["model"]]
    )
    if plan.device_binary and binary not in have:
        raise DeviceSetupError(
            f"benchmark_model is not at {binary} on {transport.uri}",
            "push it there (adb push benchmark_model /data/local/tmp/) or pass --benchmark-model LOCAL_PATH",
        )
    if binary not in have:
        transport.push(str(plan.local_binary), binary)
        transport.run(["chmod", "755", binary], timeout=PROBE_TIMEOUT_S)
    if paths["model"] not in have:
        transport.push(str(model.path), paths["model"])
    fingerprint, before = _device_facts(transport)
    warnings = _benchmark_warnings(request)
    cooldown = _remote_cooldown(transport, request.settings, plan, warnings)
    if cooldown is not None:
        before = _sysfs_snapshot(transport)
    attempts: list[dict[str, Any]] = []
    device_time_s = 0.0  # every attempt kept the device busy measuring
    for name in _benchmark_candidates(plan):
        run = _benchmark_attempt(transport, request, plan, paths, name)
        parsed = run.parsed
        attempts.append(run.attempt)
        warnings += run.warnings
        device_time_s += run.device_time_s or 0.0
        if parsed.failure is None:
            break
    else:
        raise _with_attempts(parsed.failure.to_error(), attempts)
    after = _sysfs_snapshot(transport)
    document = _benchmark_device_document(plan, parsed, name, attempts, warnings)
    document["device_time_s"] = round(device_time_s, 3) if device_time_s else None
    fingerprint["runtime"] = {"name": "benchmark_model", "version": None}
    document["fingerprint"] = fingerprint
    document["thermal"] = _thermal_section(before, after, plan, cooldown, warnings)
    return document


def _with_attempts(error: ToolkitError, attempts: list[dict[str, Any]]) -> ToolkitError:
    error.details["attempts"] = attempts
    return error


def _benchmark_warnings(request: ProfileRequest) -> list[str]:
    notes = []
    if request.settings.adaptive:
        notes.append("adaptive mode needs the Python runner; benchmark_model ran with --num_runs/--min_secs/--max_secs")
    if request.inputs:
        notes.append("benchmark_model feeds random inputs; the inputs file was not used")
    if request.parity:
        notes.append("benchmark_model cannot compare outputs with the CPU reference: no parity figures")
    return notes


def _remote_cooldown(transport: Any, settings: BenchmarkSettings, plan: Plan, warnings: list[str]) -> float | None:
    from toolkit.runner import thermal

    if settings.cooldown_below_c is None:
        return None
    waited, reached = thermal.wait_for_cooldown(
        settings.cooldown_below_c,
        settings.cooldown_max_s,
        lambda: thermal.pick_zones(_sysfs_snapshot(transport).temps_c, plan.thermal_zones),
    )
    if reached is None:
        warnings.append("cooldown requested but no thermal zone is readable on this device")
    elif not reached:
        warnings.append(f"zones still at or above {settings.cooldown_below_c:g} °C after the cooldown limit")
    return round(waited, 3)


def _thermal_section(before: Any, after: Any, plan: Plan, cooldown: float | None, warnings: list) -> Any:
    from toolkit.runner import thermal

    if not (before.temps_c or before.cpu_khz or cooldown is not None):
        return None
    changed = thermal.clocks_changed(before, after)
    if changed:
        warnings.append("CPU clocks changed during the run (throttling or DVFS): compare with care")
    return {
        "before_c": thermal.pick_zones(before.temps_c, plan.thermal_zones),
        "after_c": thermal.pick_zones(after.temps_c, plan.thermal_zones),
        "cpu_khz_before": before.cpu_khz,
        "cpu_khz_after": after.cpu_khz,
        "clocks_changed": changed,
        "cooldown_waited_s": cooldown,
    }


RunnerMode = Callable[[Any, ProfileRequest, Plan, ModelFile], dict]

RUNNER_MODES: dict[str, RunnerMode] = {"python": run_python_runner, "benchmark_model": run_benchmark_model}


# --- the result -----------------------------------------------------------------------------------


def _job(job: Any) -> dict[str, Any] | None:
    if job is None:
        return None
    return job.model_dump(mode="json") if hasattr(job, "model_dump") else dict(job)


def _with_serial(fingerprint: dict[str, Any], transport: Any) -> dict[str, Any]:
    """adb devices are known by their serial even when the device does not report one."""
    if not fingerprint.get("serial") and getattr(transport, "serial", None):
        return {**fingerprint, "serial": transport.serial}
    return fingerprint


def assemble_result(
    request: ProfileRequest, plan: Plan, model: ModelFile, transport: Any, device: dict[str, Any], duration_s: float
) -> dict[str, Any]:
    """Controller facts + the device document -> one result document (validated)."""
    config = device.get("config") or {}
    document = {
        "schema": SCHEMA,
        "status": "ok",
        "model": model.info(),
        "device": {
            "name": request.device_name or request.device,
            "uri": request.device,
            "transport": transport.kind,
            "profile": plan.profile_name,
            "fingerprint": _with_serial(device.get("fingerprint") or {}, transport),
        },
        "config": {
            "delegate_request": list(device.get("delegate_request") or plan.delegates),
            "delegate": config.get("delegate"),
            "delegate_options": config.get("delegate_options") or {},
            "threads": config.get("threads", plan.threads),
            "runner": plan.runner,
            "inputs": Path(request.inputs).name if request.inputs else "random",
            "settings": request.settings.model_dump(mode="json"),
        },
        "timings": device.get("timings") or {},
        "memory": device.get("memory") or {},
        "delegation": device.get("delegation") or {},
        "selection": device.get("selection") or {},
        "parity": device.get("parity"),
        "thermal": device.get("thermal"),
        "warnings": list(device.get("warnings") or []),
        "job": _job(request.job),
        "duration_s": round(duration_s, 3),
        "device_time_s": device.get("device_time_s"),
    }
    return validate_result(document).to_dict()


def _close_quietly(transport: Any) -> None:
    """Closing a connection must never cost a result already obtained (or hide the real error)."""
    try:
        transport.close()
    except ToolkitError:
        pass


def profile_model(request: ProfileRequest, transport: Any = None) -> dict[str, Any]:
    """Measure `request.model` on `request.device`; return one validated result document."""
    started = time.perf_counter()
    model = model_file(request.model)
    profile = load_profile_or_none(request.profile)
    owned = transport is None
    if owned:
        from toolkit.transports import open_transport

        transport = open_transport(request.device, transport_options_for(request, profile))
    try:
        plan = plan_run(request, profile, transport)
        device = RUNNER_MODES[plan.runner](transport, request, plan, model)
    finally:
        if owned:
            _close_quietly(transport)
    return assemble_result(request, plan, model, transport, device, time.perf_counter() - started)
