"""Farm scheduling overhead: 8 simulated ssh devices (private sshd on 127.0.0.2-9), side by side.

Target: the farm run's wall time <= 1.15 x the longest device's own time (the sum of its jobs'
profile durations, as each result's `duration_s` reports them): devices run in parallel and the
controller adds little. Also reported: orchestration overhead per job in ms (per device, the time
between its first job starting and its last job finishing that is not inside a profile call).

    .venv/bin/python -m bench.bench_farm [--devices 8] [--threads 1 2 3] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.15


def _models(folder: Path) -> list[str]:
    """The shipped digits example converted to fp32 and int8 (real models, a few seconds)."""
    from converters import convert_model

    digits = REPO / "examples" / "digits"
    convert_model(digits / "digits.onnx", folder, variants=["fp32", "int8"], calibration=digits / "calib.npy")
    return ["digits.fp32.tflite", "digits.int8.tflite"]


def _servers(root: Path, count: int) -> list[Any]:
    from tests.servers.sshd import SshKey, SshServer

    key = SshKey.generate(root / "client_key")
    return [SshServer(root / f"sshd-{i}", key, host=f"127.0.0.{i + 2}").start() for i in range(count)]


def _farm_file(root: Path, servers: list[Any], models: list[str], threads: list[int], seconds: float) -> Path:
    import yaml

    devices = [
        {"name": f"board-{i}", "uri": s.uri, "transport": {**s.transport_options(), "python": sys.executable}}
        for i, s in enumerate(servers)
    ]
    farm = {
        "name": "bench",
        "models": models,
        "devices": devices,
        "matrix": {"delegates": ["xnnpack"], "threads": threads},
        # A fixed measuring time per job, so each job is mostly on-device work, as on real boards.
        "settings": {"warmup_runs": 1, "warmup_min_s": 0.0, "num_runs": 1_000_000, "min_s": seconds, "max_s": seconds},
    }
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(farm))
    return path


def _run(farm_path: Path) -> tuple[float, list[dict[str, Any]], list[dict[str, Any]]]:
    from toolkit.farm import load_farm, make_executor, run_farm
    from toolkit.store import open_store

    farm = load_farm(farm_path)
    events: list[dict[str, Any]] = []
    started = time.perf_counter()
    with open_store(farm.store_path) as store:
        run_farm(farm, store, make_executor(farm.config), events.append)
        wall = time.perf_counter() - started
        documents = list(store.documents("bench"))
    return wall, events, documents


def _per_device(events: list[dict[str, Any]], documents: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    busy: dict[str, float] = defaultdict(float)
    for document in documents:
        busy[document["device"]["name"]] += float(document["duration_s"] or 0.0)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    jobs: dict[str, int] = defaultdict(int)
    for event in events:
        device = event.get("device")
        if event["event"] == "job_started":
            first.setdefault(device, event["t"])
        elif event["event"] == "job_finished":
            last[device] = event["t"]
            jobs[device] += 1
    return {
        name: {"busy_s": busy[name], "span_s": last[name] - first[name], "jobs": jobs[name]}
        for name in first
        if name in last
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench_farm", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seconds", type=float, default=0.5, help="measuring time of each job")
    args = parser.parse_args(argv)

    from toolkit.output import print_table

    root = Path(tempfile.mkdtemp(prefix="edgetk-bench-farm-"))
    servers: list[Any] = []
    try:
        models = _models(root)
        servers = _servers(root, args.devices)
        wall, events, documents = _run(_farm_file(root, servers, models, args.threads, args.seconds))
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)

    devices = _per_device(events, documents)
    longest = max(d["busy_s"] for d in devices.values())
    total_jobs = sum(d["jobs"] for d in devices.values())
    overhead_ms = 1000 * sum(d["span_s"] - d["busy_s"] for d in devices.values()) / total_jobs
    ratio = wall / longest
    figures = {
        "devices": len(devices),
        "jobs": total_jobs,
        "wall_s": round(wall, 3),
        "longest_device_s": round(longest, 3),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "overhead_ms_per_job": round(overhead_ms, 1),
        "pass": ratio <= TARGET_RATIO,
    }
    rows = [
        ["farm wall time (s)", figures["wall_s"], "", ""],
        ["longest device's own time (s)", figures["longest_device_s"], "", ""],
        ["wall / longest device", figures["ratio"], f"<= {TARGET_RATIO}", "PASS" if figures["pass"] else "FAIL"],
        ["orchestration overhead per job (ms)", figures["overhead_ms_per_job"], "reported", ""],
    ]
    print_table(
        f"bench farm: {len(devices)} ssh devices, {total_jobs} jobs", ["measure", "value", "target", "result"], rows
    )
    return figures


if __name__ == "__main__":
    main()
