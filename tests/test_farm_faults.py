"""A farm of real simulated devices — private sshd servers on 127.0.0.x, one inside a network
namespace, an adb device (the adbd test server with the real adb client) and the local device —
with faults injected while `edgetk farm run` is running: a host killed, a host hung (SIGSTOP),
packets dropped by nftables, a runner that segfaults. The healthy jobs complete, every failure is
stored with its cause, the broken devices are quarantined, and running the same command again
finishes the rest. And a job whose ssh client is killed from outside is retried, not stored as a
crash of the runner."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tests.fixtures.adb import adb_options_for
from tests.fixtures.ssh import needs_sshd
from tests.servers.procs import ProcessHandle, descendants, wait_for
from toolkit.errors import ExitCode
from toolkit.results import validate_result
from toolkit.store import open_store

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"warmup_runs": 1, "warmup_min_s": 0.0, "num_runs": 10, "min_s": 0.02, "max_s": 0.5}
FAST_SSH = {"connect_timeout_s": 3, "server_alive_interval_s": 1, "server_alive_count_max": 2}

# A device Python whose runner segfaults (a real SIGSEGV) when asked to profile one given model.
CRASHING_PYTHON = """#!{python}
import base64, ctypes, os, sys
if len(sys.argv) > 3 and sys.argv[1].endswith(".pyz") and {sha!r} in base64.urlsafe_b64decode(sys.argv[3]).decode():
    ctypes.string_at(0)  # dereference NULL: the runner dies of SIGSEGV
os.execv({python!r}, [{python!r}, *sys.argv[1:]])
"""


def ssh_device(name: str, server, python: str = sys.executable, **extra) -> dict:
    options = {**server.transport_options(), **FAST_SSH, "python": python}
    return {"name": name, "uri": server.uri, "transport": options, **extra}


def write_farm(folder: Path, name: str, devices: list[dict], models: list[str], **extra) -> Path:
    farm = {
        "name": name,
        "models": models,
        "devices": devices,
        "matrix": {"delegates": ["xnnpack"], "threads": [1, 2]},
        "settings": SETTINGS,
        "retries": {"attempts": 2, "backoff_s": 0.5},
        "health": {"max_consecutive_failures": 2, "probe_timeout_s": 5},
        **extra,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(farm, sort_keys=False))
    return path


def _netns_device(request: pytest.FixtureRequest) -> tuple | None:
    """(namespace, sshd inside it), or None where namespaces cannot be made (not root, no nft)."""
    try:
        server = request.getfixturevalue("netns_sshd")
    except pytest.skip.Exception:
        return None
    return request.getfixturevalue("netns"), server


def start_run(farm: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli", "farm", "run", str(farm), "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def follow(proc: subprocess.Popen, on_event) -> list[dict]:
    """Read the JSON progress events as they come, calling on_event for each."""
    seen = []
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event)
        on_event(event)
    proc.wait(timeout=600)
    return seen


@needs_sshd
@pytest.mark.slow
@pytest.mark.network
def test_faults_during_a_run_then_resume(
    sshd_factory, adbd_factory, adb_server, request, tmp_path, tflite_cnn_fp32, tflite_cnn_int8
):
    shutil.copy(tflite_cnn_fp32, tmp_path / "cnn_fp32.tflite")
    shutil.copy(tflite_cnn_int8, tmp_path / "cnn_int8.tflite")
    crash_sha = hashlib.sha256((tmp_path / "cnn_int8.tflite").read_bytes()).hexdigest()
    crashing = tmp_path / "crashing-python"
    crashing.write_text(CRASHING_PYTHON.format(python=sys.executable, sha=crash_sha))
    crashing.chmod(0o755)

    servers = {
        name: sshd_factory(host=f"127.0.0.{i + 2}") for i, name in enumerate(("healthy", "killed", "hung", "crashy"))
    }
    devices = [ssh_device(name, server) for name, server in servers.items() if name != "crashy"]
    devices += [ssh_device("crashy", servers["crashy"], python=str(crashing)), {"name": "local", "uri": "local"}]
    phone = adbd_factory()  # an Android device through the real adb client and server
    devices.append(
        {
            "name": "phone",
            "uri": f"adb://{phone.serial}",
            "transport": {**adb_options_for(adb_server, phone), "python": sys.executable},
        }
    )
    netns = _netns_device(request)  # a host in its own network namespace, where nftables can drop packets
    if netns is not None:
        servers["dropped"] = netns[1]
        devices.append(ssh_device("dropped", netns[1]))
    farm = write_farm(tmp_path, "faults", devices, ["cnn_fp32.tflite", "cnn_int8.tflite"])
    faults = {
        "killed": servers["killed"].kill,
        "hung": servers["hung"].pause,
        **({"dropped": lambda: netns[0].drop(port=22)} if netns else {}),
    }

    injected: dict[str, bool] = {}

    def inject(event: dict) -> None:
        # After each faulty device's first finished job: kill one host, hang one, drop one's packets.
        if event["event"] != "job_finished" or event["device"] not in faults or event["device"] in injected:
            return
        injected[event["device"]] = True
        faults[event["device"]]()

    proc = start_run(farm)
    try:
        stream = follow(proc, inject)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read()
    assert proc.returncode == ExitCode.FARM_INCOMPLETE, stderr
    assert set(injected) == set(faults)
    broken_devices = sorted(faults)
    total = 4 * len(devices)

    finished = [e for e in stream if e["event"] == "job_finished"]
    by_device: dict[str, list[dict]] = {}
    for event in finished:
        by_device.setdefault(event["device"], []).append(event)
    assert len(finished) == total  # every job of the matrix is accounted for
    for healthy in ("healthy", "local", "phone"):
        assert [e["status"] for e in by_device[healthy]] == ["ok"] * 4
    for broken in broken_devices:
        statuses = [e["status"] for e in by_device[broken]]
        assert statuses == ["ok", "failed", "failed", "skipped"], (broken, by_device[broken])
        assert all(e["transient"] for e in by_device[broken] if e["status"] == "failed")
    quarantined = {e["device"]: e["reason"] for e in stream if e["event"] == "device_quarantined"}
    assert sorted(quarantined) == broken_devices
    assert "health probe" in quarantined["killed"]
    retries = [e for e in stream if e["event"] == "job_retry"]
    assert sorted({e["device"] for e in retries}) == broken_devices  # only transient faults are retried

    crash_events = by_device["crashy"]
    crashed = [e for e in crash_events if e["status"] == "failed"]
    assert len(crashed) == 2  # the int8 model at both thread counts
    assert all("cnn_int8" in e["job"] for e in crashed)
    assert all(e["attempts"] == 1 for e in crashed)  # a crash is deterministic: not retried
    assert [e["status"] for e in crash_events if "cnn_fp32" in e["job"]] == ["ok", "ok"]

    with open_store(tmp_path / "faults.results.db") as store:
        rows = store.status_by_job("faults")
        assert len(rows) == total
        causes = {(r["device"], r["status"], r["error_kind"]) for r in rows.values() if r["status"] != "ok"}
        assert ("crashy", "failed", "runner_crashed") in causes
        assert ("killed", "failed", "unreachable") in causes
        assert ("killed", "skipped", "skipped") in causes
        assert {kind for device, _, kind in causes if device == "hung"} <= {
            "device_lost",
            "timeout",
            "unreachable",
            "skipped",
        }
        crash_document = next(d for d in store.documents("faults", ["failed"]) if d["device"]["name"] == "crashy")
        assert crash_document["error"]["type"] == "RunnerCrashedError"
        assert crash_document["model"]["sha256"] == crash_sha
        assert store.attempts()  # the retried attempts are kept as history
        for document in store.documents("faults"):
            validate_result(document)

    # The devices come back; the same command finishes what is missing and runs nothing twice.
    servers["killed"].start()
    servers["hung"].resume()
    if netns is not None:
        netns[0].restore()
    proc = start_run(farm)
    resumed = follow(proc, lambda event: None)
    stderr = proc.stderr.read()
    assert proc.returncode == ExitCode.FARM_INCOMPLETE, stderr  # the crashing jobs stay failed
    assert resumed[0]["pending"] == 3 * len(broken_devices)
    rerun = [e for e in resumed if e["event"] == "job_finished"]
    assert sorted({e["device"] for e in rerun}) == broken_devices
    assert {e["status"] for e in rerun} == {"ok"}
    status = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "farm", "status", str(farm), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert json.loads(status.stdout)["totals"] == {"done": total - 2, "failed": 2, "skipped": 0, "remaining": 0}


def _job_ssh_client(runs: Path) -> ProcessHandle | None:
    """The local ssh client carrying a runner command, once the runner measures on the device."""
    if not any(runs.glob("*/supervisor.pid")):
        return None
    for handle in descendants(os.getpid()):
        try:
            argv = Path(f"/proc/{handle.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode()).name == "ssh" and b" profile " in argv[-2]:
            return handle
    return None


@needs_sshd
@pytest.mark.network
@pytest.mark.parametrize("stray", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_stray_signal_to_a_jobs_ssh_client_is_retried_not_stored_as_a_crash(
    sshd_factory, tmp_path, tflite_cnn_fp32, stray
):
    """The load test once stored three jobs as `runner_crashed: ... exited with 255 without a
    result`: a signal from outside had killed their ssh (SIGTERM makes OpenSSH exit 255, the code
    a killed remote command also gives). Nothing crashed on the device, so it is retried."""
    from toolkit.farm import load_farm, make_executor, run_farm

    shutil.copy(tflite_cnn_fp32, tmp_path / "cnn_fp32.tflite")
    server = sshd_factory(host="127.0.0.2", own_home=True)
    device = ssh_device("board", server)
    long_job = {"warmup_runs": 1, "warmup_min_s": 0.0, "num_runs": 1_000_000, "min_s": 1.5, "max_s": 1.5}
    farm = load_farm(
        write_farm(tmp_path, "stray", [device], ["cnn_fp32.tflite"], settings=long_job, matrix={"threads": [1]})
    )
    runs = Path(device["transport"]["workdir"]) / "runs"
    events: list[dict] = []
    killed: list[int] = []

    def kill_first_attempt(event: dict) -> None:
        events.append(event)
        if event["event"] == "job_started" and event["attempt"] == 1:
            threading.Thread(target=lambda: killed.append(_kill_when_running(runs, stray)), daemon=True).start()

    with open_store(tmp_path / "stray.results.db") as store:
        run_farm(farm, store, make_executor(farm.config), kill_first_attempt)
        rows = store.rows("stray")
    assert killed == [stray]
    retried = [e for e in events if e["event"] == "job_retry"]
    assert len(retried) == 1, retried
    assert retried[0]["error"].startswith("device_lost:"), retried
    assert [(r["status"], r["attempts"]) for r in rows] == [("ok", 2)]


def _kill_when_running(runs: Path, stray: int) -> int:
    """Send `stray` to the job's ssh client once the runner measures; return it if it was sent."""
    clients: list[ProcessHandle] = []

    def running() -> bool:
        client = _job_ssh_client(runs)
        clients.extend([client] if client is not None else [])
        return bool(clients)

    wait_for(running, 120, "the runner to measure")
    return stray if clients[0].send(stray) else 0
