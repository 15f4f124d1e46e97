"""Process helpers shared by the test servers: find descendants, signal a tree, stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def children_of(pid: int) -> list[int]:
    """PIDs of every live descendant of pid (from /proc; no psutil needed)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: the fields start after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def signal_tree(pid: int, sig: int, include_root: bool = True) -> None:
    """Send sig to pid and all its descendants (descendants first, so none escapes)."""
    targets = children_of(pid) + ([pid] if include_root else [])
    for target in targets:
        try:
            os.kill(target, sig)
        except ProcessLookupError:
            pass


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


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.01) -> None:
    """Poll predicate until it is true; raise RuntimeError naming `what` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, T for stopped, Z...), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


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
