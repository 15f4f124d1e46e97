"""Process helpers shared by the test servers: find descendants, signal a tree, stop by PID.

PIDs are reused: this machine's pid_max is 32768 and every ssh command through root's login
scripts forks hundreds of processes, so the PID space wraps every few seconds while farm tests
run. A PID remembered for even a fraction of a second may name an unrelated process by the time
it is signalled (another test's runner, say, which then dies "of SIGKILL" for no reason of its
own). So processes are signalled through `ProcessHandle`s: a pidfd opened while the process is
known to be the one listed (same start time), which can never reach a different process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 onwards), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: the fields start after the last ')'.
    return stat.rsplit(")", 1)[1].split()


def start_time(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot): with the PID, its identity."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _tree(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every live descendant of pid, from one scan of /proc."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append((int(entry.name), int(fields[19])))
    found: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kid for kid, _ in kids)
    return found


def children_of(pid: int) -> list[int]:
    """PIDs of every live descendant of pid (from /proc; no psutil needed). To signal them later,
    take `descendants(pid)` instead: a PID alone may name another process by then."""
    return [kid for kid, _ in _tree(pid)]


@dataclass
class ProcessHandle:
    """One process, pinned: signals reach it or nobody, never a process that reused its PID."""

    pid: int
    start: int | None
    fd: int | None  # a pidfd where the kernel has them; else the start time is checked before each signal

    @classmethod
    def of(cls, pid: int, start: int | None = None) -> ProcessHandle | None:
        """A handle on the process running as pid (and started at `start`, if given), or None."""
        start = start_time(pid) if start is None else start
        if start is None:
            return None
        fd = None
        if hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                return None
            except OSError:  # a kernel without pidfds
                fd = None
        if start_time(pid) != start:  # the PID changed hands since it was listed
            if fd is not None:
                os.close(fd)
            return None
        return cls(pid, start, fd)

    def send(self, sig: int) -> bool:
        """Signal the process if it still exists; False if it is gone."""
        try:
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            elif start_time(self.pid) == self.start:
                os.kill(self.pid, sig)
            else:
                return False
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.close()


def handles(pids: list[int]) -> list[ProcessHandle]:
    """Handles on those of pids that still run (the gone ones are dropped)."""
    return [h for h in (ProcessHandle.of(pid) for pid in pids) if h is not None]


def descendants(pid: int) -> list[ProcessHandle]:
    """Handles on every live descendant of pid."""
    found = (ProcessHandle.of(kid, start) for kid, start in _tree(pid))
    return [h for h in found if h is not None]


def send_all(targets: list[ProcessHandle], sig: int) -> None:
    """Signal each process that is still there."""
    for target in targets:
        target.send(sig)


def signal_tree(pid: int, sig: int, include_root: bool = True) -> None:
    """Send sig to pid and all its descendants (descendants first, so none escapes)."""
    send_all(descendants(pid) + (handles([pid]) if include_root else []), sig)


def stop_process(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """Terminate a child we started, by PID: SIGCONT+SIGTERM to its tree, then SIGKILL."""
    if proc.poll() is not None:
        return
    signal_tree(proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
    signal_tree(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        signal_tree(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.01):
    """Poll predicate until it gives a true value, and return that; raise RuntimeError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
    return value


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, T for stopped, Z...), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while the process exists and has not exited (a zombie waiting to be reaped is not alive)."""
    return process_state(pid) not in (None, "Z", "X")


def time_out_after_start(run, started: Path, error: type[BaseException], timeouts=(2, 8, 30, 120)) -> BaseException:
    """Call run(timeout) with growing timeouts until it times out *after* the command started.

    `started` is a file the command writes first. On a loaded machine a short timeout can expire
    before the command even starts; that attempt proves nothing, so the next one waits longer.
    Returns the timeout error of the attempt that counted.
    """
    for timeout in timeouts:
        try:
            run(timeout)
        except error as caught:
            if started.exists():
                return caught
            continue
        raise AssertionError(f"the command finished instead of timing out after {timeout} s")
    raise AssertionError(f"the command never started within {timeouts[-1]} s")
