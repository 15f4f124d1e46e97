"""Farm orchestration overhead: 8 simulated ssh devices (private sshd on 127.0.0.2-9), side by side.

Target (issue 5): the farm run's wall time <= 1.15 x the longest device's own on-device time. A
device's own time is the sum over its jobs of `device_time_s`: the measuring process's wall time
on the device, by the device's clock (docs/results.md). Whatever the farm adds on top of it is
orchestration: ssh round trips, uploads, connecting, scheduling and storing. The result's
`duration_s` is no yardstick for this: it is the controller's time around each profile call, so it
already contains the ssh round trips and uploads the target is about.

The orchestration overhead is reported per job in ms, with a breakdown whose rows add up to it:

- reaching the device: `duration_s - device_time_s` of each job, in two parts: the ssh and scp
  commands' time beyond the device's own time (probe, cache check, uploads, and each runner command's
  ssh round trip), and the controller's own work inside `profile_model` between those commands
- around the profile call: job_started -> job_finished minus `duration_s` (transport pool, storing)
- between jobs on a device: job_finished -> that device's next job_started
- start-up: run start -> the device's first job_started (planning, store, threads)
- shut-down: the last job's end -> the end of the run (closing the connections), for every device

Idle time of a device whose jobs are done while another still works is imbalance, shown apart.
Every ssh and scp command the controller runs is counted by kind (connect, runner, probe, upload,
cache check, ...), so a change in round trips per job shows up here, and the controller's own CPU per
attempt tells its work from its waiting (eight simulated devices measure on the controller's two
cores, which real boards never do).

Jobs measure for a fixed time (`--seconds` of timed runs after `--warmup` seconds of warmup), as
jobs on real boards take seconds. The models are MobileNetV2 (alpha 0.35, 96x96) float and int8,
~0.3 ms per inference here, so a job keeps ~1,300 samples, as a few-ms model on a board would.
`--models digits` profiles the shipped digits example instead: ~7 µs per inference, ~300k samples
and ~3 MB of result per job, whose shipping, parsing and storing then show in the overhead.

Each simulated device logs in with a HOME of its own, as a separate board does: otherwise every
ssh command would run this machine's ~/.bashrc (root's runs `pyenv init`: ~150 ms and hundreds of
processes per command, all eight devices queueing on one pyenv lock and sharing two cores with the
measurements) — a cost of this controller's login scripts, not of the farm. `--machine-login`
measures with them, for the record.

    .venv/bin/python -m bench.bench_farm [--devices 8] [--threads 1 2 3] [--seconds 2] [--warmup 0.5]
                                         [--models mobilenet|digits] [--machine-login]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.15


# --- set-up ----------------------------------------------------------------------------------------


def _digits(folder: Path) -> list[Path]:
    """The shipped digits example converted to fp32 and int8 (a µs model: ~300k samples per job)."""
    from converters import convert_model

    digits = REPO / "examples" / "digits"
    convert_model(digits / "digits.onnx", folder, variants=["fp32", "int8"], calibration=digits / "calib.npy")
    return [folder / "digits.fp32.tflite", folder / "digits.int8.tflite"]


def _mobilenet(folder: Path) -> list[Path]:
    """MobileNetV2 (alpha 0.35, 96x96) float and int8: the test suite's cached pair (built once)."""
    from tests.fixtures.tflite_models import ensure_models

    models = ensure_models(REPO / ".pytest_cache" / "d" / "edgetk_tflite_models", "mobilenet")
    return [models["mobilenet_v2"], models["mobilenet_v2_int8"]]


MODEL_SETS = {"mobilenet": _mobilenet, "digits": _digits}


def _models(folder: Path, name: str) -> list[str]:
    paths = MODEL_SETS[name](folder)
    for path in paths:
        if path.parent != folder:
            shutil.copy(path, folder / path.name)
    return [path.name for path in paths]


def _servers(root: Path, count: int, own_home: bool) -> list[Any]:
    from tests.servers.sshd import SshKey, SshServer

    key = SshKey.generate(root / "client_key")
    servers: list[Any] = []
    try:
        for i in range(count):
            server = SshServer(root / f"sshd-{i}", key, host=f"127.0.0.{i + 2}", own_home=own_home)
            servers.append(server.start())
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _farm_file(root: Path, servers: list[Any], models: list[str], args: argparse.Namespace) -> Path:
    import yaml

    devices = [
        {"name": f"board-{i}", "uri": s.uri, "transport": {**s.transport_options(), "python": sys.executable}}
        for i, s in enumerate(servers)
    ]
    settings = {
        "warmup_runs": 1,
        "warmup_min_s": args.warmup,
        "num_runs": 1_000_000,  # the time bounds decide: every job measures for the same time
        "min_s": args.seconds,
        "max_s": args.seconds,
    }
    farm = {
        "name": "bench",
        "models": models,
        "devices": devices,
        "matrix": {"delegates": ["xnnpack"], "threads": args.threads},
        "settings": settings,
    }
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(farm))
    return path


# --- counting the controller's ssh and scp commands -------------------------------------------------


@dataclass
class CommandLog:
    """Every ssh/scp child process the ssh transport ran: (host, kind, seconds, job_id)."""

    entries: list[tuple[str, str, float, str | None]] = field(default_factory=list)
    current_job: dict[str, str] = field(default_factory=dict)  # device thread -> the job it runs
    attempt_cpu_s: list[float] = field(default_factory=list)  # controller CPU of each attempt (its thread)

    def record(self, argv: list[str], seconds: float) -> None:
        job = self.current_job.get(threading.current_thread().name)
        self.entries.append((_host(argv), command_kind(argv), seconds, job))

    def follow(self, event: dict[str, Any]) -> None:
        """Progress events come from the device's own thread: note which job it is on."""
        if event["event"] == "job_started":
            self.current_job[threading.current_thread().name] = event["job_id"]

    def seconds_by_job(self) -> dict[str, float]:
        """Time in ssh/scp commands per job (closing the connection after the last job excluded)."""
        totals: dict[str, float] = defaultdict(float)
        for _, kind, seconds, job in self.entries:
            if job is not None and not kind.startswith("connection control"):
                totals[job] += seconds
        return totals


def _host(argv: list[str]) -> str:
    for arg in argv:
        if arg.startswith("127.0.0."):
            return arg.split(":", 1)[0]
    return "?"


# What a remote command is: by its program, else by a word in it.
PROGRAM_KINDS = {"mv": "rename after upload", "rm": "remove run folder", "true": "health probe"}
REMOTE_KINDS: tuple[tuple[str, str], ...] = (
    ('cat > "$2"', "upload (one ssh command)"),  # first: its arguments name runner.pyz too
    ("mkdirs", "setup probe"),  # before the runner: the probe's argument names runner.pyz
    ('echo "have', "folders + cache check (shell)"),  # a new model on a device whose setup is known
    ("runner-", "runner (the job itself)"),
    ("pwd -P", "resolve home folder"),
)


def command_kind(argv: list[str]) -> str:
    """A short name for one ssh/scp command line, for the round-trip table."""
    if Path(argv[0]).name.startswith("scp"):
        return "upload (scp)"
    if "-M" in argv:
        return "connect (shared connection)"
    if "-O" in argv:
        return f"connection control (-O {argv[argv.index('-O') + 1]})"
    command = remote_command(argv[-1])
    program = command.split(maxsplit=1)[0] if command.strip() else "?"
    if program in PROGRAM_KINDS:
        return PROGRAM_KINDS[program]
    for word, kind in REMOTE_KINDS:
        if word in command:
            return kind
    return f"other: {program}"


def remote_command(line: str) -> str:
    """The user's command inside the transport's remote line (PID report before it, exit status after)."""
    from toolkit.transports.base import REPORT_PID

    line = line.removeprefix(REPORT_PID + "; ").removeprefix("exec ")
    return line.split("; s=$?", 1)[0]


def _cpu_timed(run_attempt: Callable[..., Any], log: CommandLog) -> Callable[..., Any]:
    """The controller's own CPU per attempt: with the wall time, it tells work from waiting for a core."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return run_attempt(*args, **kwargs)
        finally:
            log.attempt_cpu_s.append(time.thread_time() - started)

    return timed


def _counting_connect(connect: Callable[..., Any], log: CommandLog) -> Callable[..., Any]:
    """Opening the shared connection (ssh -M, started with Popen) counts as a command too."""

    def counted(transport: Any) -> Any:
        if transport._master_started:
            return connect(transport)
        started = time.perf_counter()
        try:
            return connect(transport)
        finally:
            log.record(["ssh", "-M", transport.target.destination], time.perf_counter() - started)

    return counted


def _counting(run_process: Callable[..., Any], log: CommandLog) -> Callable[..., Any]:
    """Every ssh/scp child process the transport runs, timed."""

    def counted(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return run_process(argv, *args, **kwargs)
        finally:
            log.record(list(argv), time.perf_counter() - started)

    return counted


# --- the run -----------------------------------------------------------------------------------------


@dataclass
class FarmRunData:
    wall_s: float
    events: list[dict[str, Any]]
    documents: list[dict[str, Any]]
    commands: CommandLog


def _run(farm_path: Path) -> FarmRunData:
    import toolkit.farm.executors as executors
    import toolkit.transports.ssh as ssh
    from toolkit.farm import load_farm, make_executor, run_farm
    from toolkit.store import open_store

    farm = load_farm(farm_path)
    events: list[dict[str, Any]] = []
    commands = CommandLog()
    original, original_attempt, original_connect = ssh.run_process, executors.run_attempt, ssh.SshTransport.connect
    ssh.run_process = _counting(original, commands)
    executors.run_attempt = _cpu_timed(original_attempt, commands)
    ssh.SshTransport.connect = _counting_connect(original_connect, commands)
    try:
        with open_store(farm.store_path) as store:
            started = time.monotonic()
            run_farm(farm, store, make_executor(farm.config), lambda e: (events.append(e), commands.follow(e)))
            wall = time.monotonic() - started
            documents = list(store.documents("bench"))
    finally:
        ssh.run_process, executors.run_attempt = original, original_attempt
        ssh.SshTransport.connect = original_connect
    return FarmRunData(wall, events, documents, commands)


# --- analysis ----------------------------------------------------------------------------------------


@dataclass
class DeviceFigures:
    """One device's timeline (seconds; event times are since the run started)."""

    name: str
    jobs: int = 0
    device_s: float = 0.0  # sum of device_time_s
    missing_device_time: int = 0  # jobs whose result has no device_time_s
    duration_s: float = 0.0  # sum of duration_s
    commands_s: float = 0.0  # time in ssh/scp commands during its jobs
    in_calls_s: float = 0.0  # sum of job_started -> job_finished
    between_s: float = 0.0  # sum of job_finished -> next job_started
    first_start: float = 0.0
    last_finish: float = 0.0


def per_device(
    events: list[dict[str, Any]], documents: list[dict[str, Any]], commands_by_job: dict[str, float]
) -> dict[str, DeviceFigures]:
    """Each device's own time and where the rest of its time went."""
    devices: dict[str, DeviceFigures] = {}
    for document in documents:
        figures = devices.setdefault(document["device"]["name"], DeviceFigures(document["device"]["name"]))
        figures.jobs += 1
        figures.duration_s += float(document["duration_s"] or 0.0)
        figures.commands_s += commands_by_job.get(document["job"]["job_id"], 0.0)
        if document.get("device_time_s") is None:
            figures.missing_device_time += document.get("status") == "ok"  # failed jobs are counted apart
        else:
            figures.device_s += float(document["device_time_s"])
    started: dict[str, float] = {}  # a job's first attempt started (retries count from there)
    begun: set[str] = set()
    for event in events:
        name = event.get("device")
        if name not in devices:
            continue
        figures = devices[name]
        if event["event"] == "job_started":
            if name not in begun:
                begun.add(name)
                figures.first_start = event["t"]
            elif name not in started:
                figures.between_s += event["t"] - figures.last_finish
            started.setdefault(name, event["t"])
        elif event["event"] == "job_finished" and name in started:
            figures.in_calls_s += event["t"] - started.pop(name)
            figures.last_finish = event["t"]
    return devices


def overhead_breakdown(devices: dict[str, DeviceFigures], wall_s: float) -> dict[str, float]:
    """Milliseconds per job of each part of the orchestration overhead; the parts add up to the total.

    A device's overhead runs from the start of the run to its last job's end, minus its own time,
    plus the farm's shut-down after the last job of all. Time a device spends idle because its
    jobs are done while another device still works is imbalance, reported apart.
    """
    jobs = sum(d.jobs for d in devices.values()) or 1
    end = max(d.last_finish for d in devices.values())
    parts = {
        "reaching the device: ssh/scp commands beyond the device's own time": sum(
            d.commands_s - d.device_s for d in devices.values()
        ),
        "reaching the device: controller work in profile_model between commands": sum(
            d.duration_s - d.commands_s for d in devices.values()
        ),
        "around the profile call (pool, storing)": sum(d.in_calls_s - d.duration_s for d in devices.values()),
        "between jobs on a device": sum(d.between_s for d in devices.values()),
        "start-up (planning, store, threads)": sum(d.first_start for d in devices.values()),
        "shut-down (after the last job: closing connections)": len(devices) * (wall_s - end),
    }
    breakdown = {name: 1000.0 * seconds / jobs for name, seconds in parts.items()}
    breakdown["total"] = sum(breakdown.values())
    breakdown["imbalance (idle after its own last job; not overhead)"] = (
        1000.0 * sum(end - d.last_finish for d in devices.values()) / jobs
    )
    return breakdown


def command_table(log: CommandLog, jobs: int) -> list[list[Any]]:
    """Rows: kind, count, per job, median ms, total s (most frequent first)."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for _, kind, seconds, _ in log.entries:
        by_kind[kind].append(seconds)
    rows = [
        [kind, len(times), round(len(times) / jobs, 2), round(1000 * statistics.median(times), 1), round(sum(times), 2)]
        for kind, times in by_kind.items()
    ]
    rows.sort(key=lambda row: -row[1])
    all_times = [seconds for _, _, seconds, _ in log.entries]
    if all_times:
        median_ms = round(1000 * statistics.median(all_times), 1)
        rows.append(
            [
                "all ssh/scp commands",
                len(all_times),
                round(len(all_times) / jobs, 2),
                median_ms,
                round(sum(all_times), 2),
            ]
        )
    return rows


# --- report ------------------------------------------------------------------------------------------


def _figures(data: FarmRunData, args: argparse.Namespace) -> dict[str, Any]:
    devices = per_device(data.events, data.documents, data.commands.seconds_by_job())
    jobs = sum(d.jobs for d in devices.values())
    missing = sum(d.missing_device_time for d in devices.values())
    longest = max(devices.values(), key=lambda d: d.device_s)
    ratio = data.wall_s / longest.device_s if longest.device_s and not missing else None
    failed = [d for d in data.documents if d.get("status") != "ok"]
    ok = [d for d in data.documents if d.get("status") == "ok"]
    retries = [e for e in data.events if e["event"] == "job_retry"]
    return {
        "devices": len(devices),
        "jobs": jobs,
        "failed_jobs": len(failed),
        "retried_attempts": len(retries),
        "errors": sorted({e.get("error") or "" for e in retries} | {_brief(d.get("error")) for d in failed}),
        "seconds_per_job": args.seconds,
        "warmup_s": args.warmup,
        "models": args.models,
        "samples_per_job": round(statistics.mean(len(d["timings"].get("samples") or []) for d in ok)) if ok else 0,
        "document_kb_per_job": round(statistics.mean(len(json.dumps(d)) for d in ok) / 1000, 1) if ok else 0,
        "device_login": "machine HOME (~/.bashrc runs)" if args.machine_login else "own HOME per device",
        "wall_s": round(data.wall_s, 3),
        "longest_device": longest.name,
        "longest_device_s": round(longest.device_s, 3),
        "mean_device_time_per_job_s": round(sum(d.device_s for d in devices.values()) / max(jobs, 1), 3),
        "jobs_without_device_time": missing,
        "controller_cpu_ms_per_attempt": round(1000 * statistics.mean(data.commands.attempt_cpu_s or [0.0]), 1),
        "ratio": None if ratio is None else round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "pass": ratio is not None and ratio <= TARGET_RATIO and not failed,
        "overhead_ms_per_job": {k: round(v, 1) for k, v in overhead_breakdown(devices, data.wall_s).items()},
        "commands": command_table(data.commands, max(jobs, 1)),
        "per_device": {
            d.name: {
                "jobs": d.jobs,
                "device_s": round(d.device_s, 3),
                "duration_s": round(d.duration_s, 3),
                "first_start_s": round(d.first_start, 3),
                "last_finish_s": round(d.last_finish, 3),
            }
            for d in devices.values()
        },
    }


def _brief(error: dict[str, Any] | None) -> str:
    return f"{(error or {}).get('type')}: {(error or {}).get('message')}"


def _print(figures: dict[str, Any]) -> None:
    from toolkit.output import print_table

    verdict = "PASS" if figures["pass"] else "FAIL"
    note = ""
    if figures["jobs_without_device_time"]:
        note = f" ({figures['jobs_without_device_time']} results lack device_time_s: not measurable)"
    elif figures["failed_jobs"]:
        note = f" ({figures['failed_jobs']} jobs failed)"
    rows = [
        ["farm wall time (s)", figures["wall_s"], "", ""],
        [
            f"longest device's own time, sum of device_time_s ({figures['longest_device']}) (s)",
            figures["longest_device_s"],
            "",
            "",
        ],
        ["device time per job, mean (s)", figures["mean_device_time_per_job_s"], "", ""],
        [
            "samples / result size per job",
            f"{figures['samples_per_job']} / {figures['document_kb_per_job']} kB",
            "",
            "",
        ],
        ["wall / longest device's own time", figures["ratio"], f"<= {TARGET_RATIO}", verdict + note],
        ["orchestration overhead per job (ms)", figures["overhead_ms_per_job"]["total"], "reported", ""],
        ["controller CPU per attempt, its thread (ms)", figures["controller_cpu_ms_per_attempt"], "", ""],
    ]
    title = f"bench farm: {figures['devices']} ssh devices ({figures['device_login']}), {figures['models']}, {figures['jobs']} jobs of {figures['warmup_s']:g} s warmup + {figures['seconds_per_job']:g} s runs"
    print_table(title, ["measure", "value", "target", "result"], rows)
    breakdown = [[name, ms] for name, ms in figures["overhead_ms_per_job"].items()]
    print_table("orchestration overhead per job (ms)", ["part", "ms/job"], breakdown)
    print_table("ssh round trips", ["command", "count", "per job", "median ms", "total s"], figures["commands"])
    if figures["retried_attempts"] or figures["failed_jobs"]:
        print(f"{figures['retried_attempts']} attempts retried, {figures['failed_jobs']} jobs failed:")
        for error in figures["errors"]:
            print(f"  {error}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench_farm", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed runs of each job (seconds)")
    parser.add_argument("--warmup", type=float, default=0.5, help="warmup of each job (seconds)")
    parser.add_argument("--models", choices=sorted(MODEL_SETS), default="mobilenet", help="the two models profiled")
    parser.add_argument(
        "--machine-login",
        action="store_true",
        help="devices log in with this machine's HOME (its ~/.bashrc runs for every ssh command)",
    )
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="edgetk-bench-farm-"))
    servers: list[Any] = []
    try:
        models = _models(root, args.models)
        servers = _servers(root, args.devices, own_home=not args.machine_login)
        data = _run(_farm_file(root, servers, models, args))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    figures = _figures(data, args)
    _print(figures)
    return figures


if __name__ == "__main__":
    main()
