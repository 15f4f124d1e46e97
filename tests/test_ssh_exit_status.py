"""Exit statuses over ssh against a private sshd: a command killed by a signal is not a lost device.

OpenSSH exits 255 with no message when the remote command dies of a signal — the code of its own
connection failures. The transport keeps the remote shell to report the status (128+N), so a
runner killed by SIGKILL (the OOM killer) is a RunnerCrashedError naming the signal, and a
command's own `exit 255` is just that.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from tests.fixtures.ssh import needs_sshd
from tests.servers.procs import ProcessHandle, alive, children_of, handles, send_all, wait_for
from toolkit.errors import RunnerCrashedError
from toolkit.profile import ProfileRequest, profile_model
from toolkit.results import BenchmarkSettings

pytestmark = [needs_sshd, pytest.mark.network]

LONG = BenchmarkSettings(warmup_runs=1, warmup_min_s=0.0, num_runs=1, min_s=120.0, max_s=120.0)


def _transport(server, **overrides):
    from toolkit.transports import open_transport

    return open_transport(server.uri, server.transport_options(python=sys.executable, **overrides))


@pytest.mark.parametrize("multiplex", [True, False])
def test_signals_and_a_commands_own_255_are_told_apart(sshd, multiplex):
    with _transport(sshd, multiplex=multiplex) as transport:
        killed = transport.run(["sh", "-c", "kill -KILL $$"], check=False)
        assert killed.returncode == 128 + signal.SIGKILL
        segfault = transport.run(
            [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"], check=False
        )
        assert segfault.returncode == 128 + signal.SIGSEGV
        own = transport.run(["sh", "-c", "echo out; echo err >&2; exit 255"], check=False)
        assert (own.returncode, own.stdout, own.stderr) == (255, "out\n", "err\n")
        partial = transport.run(["sh", "-c", "printf 'no newline' >&2"])
        assert (partial.returncode, partial.stderr) == (0, "no newline")


def _profile_in_thread(model, server, workdir: Path) -> tuple[threading.Thread, dict]:
    outcome: dict = {}
    options = server.transport_options(python=sys.executable, workdir=str(workdir))

    def run() -> None:
        try:
            request = ProfileRequest(model, device=server.uri, transport_options=options, settings=LONG)
            outcome["result"] = profile_model(request)
        except Exception as exc:  # the test inspects it
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    return worker, outcome


def _supervisor_pid(workdir: Path) -> int | None:
    for pid_file in (workdir / "runs").glob("*/supervisor.pid"):
        text = pid_file.read_text().strip()
        if text and (workdir / "runs" / pid_file.parent.name / "runner.log").exists():
            return int(text.split()[0])  # "PID START"
    return None


def _measuring_runner(workdir: Path, started: list[ProcessHandle]) -> tuple[int, int]:
    """(supervisor, measuring child) once the runner measures; handles on both go into `started`."""
    supervisor = wait_for(lambda: _supervisor_pid(workdir), 60, "the runner to measure")
    child = wait_for(lambda: children_of(supervisor), 30, "the measuring child")[0]
    started += handles([supervisor, child])
    return supervisor, child


def test_a_runner_killed_by_the_oom_killer_is_a_crash_with_its_signal(sshd, tflite_cnn_fp32, tmp_path):
    workdir = tmp_path / "device"
    worker, outcome = _profile_in_thread(tflite_cnn_fp32, sshd, workdir)
    started: list[ProcessHandle] = []
    try:
        supervisor, child = _measuring_runner(workdir, started)
        os.kill(supervisor, signal.SIGKILL)
        worker.join(60)
        assert not worker.is_alive()
        error = outcome.get("error")
        assert isinstance(error, RunnerCrashedError), outcome
        assert error.details["signal_name"] == "SIGKILL"
        assert "out-of-memory" in error.message
        assert not error.transient
        wait_for(lambda: not alive(child), 10, "the measurement to die with its supervisor")
        assert list((workdir / "runs").iterdir()) == []  # the controller cleared the run folder
    finally:
        send_all(started, signal.SIGKILL)
        worker.join(5)


def test_a_runner_whose_connection_died_stops_by_itself(sshd, tflite_cnn_fp32, tmp_path):
    """Only the ssh session goes (its sshd process is killed): the runner, under its shell, notices."""
    workdir = tmp_path / "device"
    worker, outcome = _profile_in_thread(tflite_cnn_fp32, sshd, workdir)
    started: list[ProcessHandle] = []
    try:
        supervisor, child = _measuring_runner(workdir, started)
        sessions = [pid for pid in children_of(sshd.proc.pid) if _command(pid) == "sshd"]
        for pid in sessions:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(supervisor) and not alive(child), 30, "the runner to stop by itself")
        worker.join(60)
        assert "error" in outcome  # the controller saw the connection die
    finally:
        send_all(started, signal.SIGKILL)
        worker.join(5)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""
