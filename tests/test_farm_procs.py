"""The farm's test servers signal processes through handles, never by a remembered PID.

PIDs are reused quickly here (pid_max 32768; farm tests fork hundreds of processes per ssh
command), and the load test once lost three jobs to runners that died of a signal nothing in the
farm sent. A helper that SIGKILLs a PID it listed a moment ago can hit whatever process got that
number since. These tests make that reuse happen on purpose (by setting the kernel's last PID)
and check that the helpers leave the newcomer alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.ssh import needs_sshd
from tests.servers import procs, sshd
from tests.servers.procs import ProcessHandle, descendants, process_state, wait_for

NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def _can_steer_pids() -> bool:
    return os.geteuid() == 0 and os.access(NS_LAST_PID, os.W_OK)


needs_pid_steering = pytest.mark.skipif(
    not _can_steer_pids(), reason="needs root and a writable /proc/sys/kernel/ns_last_pid"
)


def _start_as(pid: int) -> subprocess.Popen | None:
    """Start `sleep` as process number `pid` (free again), or None if other forks keep taking it."""
    for _ in range(200):
        NS_LAST_PID.write_text(str(pid - 1))  # the next process gets pid, unless another fork wins
        proc = subprocess.Popen(["sleep", "120"])
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
    return None


def _survives(proc: subprocess.Popen) -> bool:
    """True if proc is still running a second later (a SIGKILL takes a moment to land)."""
    try:
        proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return True
    return False


def _gone(pid: int) -> None:
    """Wait until pid is free for reuse (exited and reaped)."""
    wait_for(lambda: process_state(pid) is None, 30, f"process {pid} to be reaped")


@needs_pid_steering
def test_a_handle_never_reaches_a_process_that_reused_its_pid():
    old = subprocess.Popen(["sleep", "120"])
    handle = ProcessHandle.of(old.pid)
    assert handle is not None
    old.kill()
    old.wait()
    newcomer = _start_as(old.pid)
    if newcomer is None:
        pytest.skip("the machine forks too fast to steer a PID")
    try:
        os.kill(old.pid, 0)  # the number now names the newcomer: signalling by PID would hit it
        assert handle.send(signal.SIGKILL) is False
        assert _survives(newcomer)
    finally:
        newcomer.kill()
        newcomer.wait()
        handle.close()


@needs_pid_steering
def test_a_live_process_is_reached_through_its_handle():
    proc = subprocess.Popen(["sleep", "120"])
    handle = ProcessHandle.of(proc.pid)
    assert handle.send(signal.SIGKILL) is True
    assert proc.wait(timeout=30) == -signal.SIGKILL


@needs_sshd
@needs_pid_steering
def test_stopping_sshd_spares_a_process_that_took_a_session_pid(sshd_factory, monkeypatch):
    server = sshd_factory(host="127.0.0.2", own_home=True)
    from toolkit.transports import open_transport

    transport = open_transport(server.uri, server.transport_options(python=sys.executable))
    transport.run(["true"])  # the shared connection: a session process that outlives it
    sessions = [h.pid for h in descendants(server.proc.pid)]
    assert sessions
    newcomers: list[subprocess.Popen] = []
    real_stop = procs.stop_process

    def stop_then_reuse(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
        # What a busy machine does between sshd.stop() listing the sessions and killing them.
        real_stop(proc, grace_s)
        _gone(sessions[0])
        newcomer = _start_as(sessions[0])
        if newcomer is not None:
            newcomers.append(newcomer)

    monkeypatch.setattr(sshd, "stop_process", stop_then_reuse)
    try:
        server.stop()
        if not newcomers:
            pytest.skip("the machine forks too fast to steer a PID")
        assert _survives(newcomers[0])  # the old code SIGKILLed it here
    finally:
        for newcomer in newcomers:
            newcomer.kill()
            newcomer.wait()
        transport.close()
