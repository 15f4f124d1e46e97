"""The runner's own clocks: how long this process has existed, and where its time went.

`process_age_s()` is the wall time since the kernel started this process (Linux and Android:
`/proc/self/stat` starttime, in clock ticks since boot, against CLOCK_BOOTTIME). The kernel
records the start in whole ticks (10 ms on most kernels), so the start is known only within one
tick; the age reported is the *lower* bound — start at the end of that tick, or when the runner's
first line ran if that was earlier — so it never exceeds the true age. Where there is no /proc (or
the two clocks disagree, e.g. an old kernel counting the start without suspend time) it is the
time since the runner's first line of Python, which misses only the interpreter's start-up.

`Phases` marks named points on perf_counter (on Linux the system-wide monotonic clock, so the
supervisor and its child share it) and gives the time between consecutive marks: the breakdown
of a profile's fixed costs.
Stdlib only: the supervisor imports it.
"""

from __future__ import annotations

import os
import time

STAT = "/proc/self/stat"
# A kernel start time further than this before the runner's first line is not believable.
MAX_STARTUP_S = 30.0

# Taken when the runner's entry point is first imported (toolkit.runner.__main__ calls mark_entry()).
_ENTRY: dict = {}


def _boottime() -> float | None:
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    if clock is None:
        return None
    try:
        return time.clock_gettime(clock)
    except OSError:
        return None


def mark_entry() -> None:
    """Remember when the runner's first line ran (idempotent: the earliest call counts)."""
    if not _ENTRY:
        _ENTRY.update(perf=time.perf_counter(), boottime=_boottime())


def entry_perf_counter() -> float:
    """perf_counter() at the runner's first line (the start of the phase breakdown)."""
    mark_entry()
    return _ENTRY["perf"]


def proc_stat(path: str = STAT) -> list | None:
    """The fields of /proc/PID/stat from field 3 (the state) on; None without /proc or the process."""
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # the name before ')' may hold spaces and ')'
    return fields if len(fields) > 19 else None


def start_ticks(path: str = STAT) -> int | None:
    """A process's start in clock ticks since boot (field 22 of /proc/PID/stat); None without /proc."""
    fields = proc_stat(path)
    try:
        return int(fields[19]) if fields else None
    except ValueError:
        return None


def kernel_start_boottime(path: str = STAT) -> tuple[float, float] | None:
    """(start, resolution) of this process in seconds since boot, from /proc; None without it."""
    ticks = start_ticks(path)
    try:
        hertz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if ticks is None or hertz <= 0:
        return None
    return ticks / hertz, 1.0 / hertz


def process_age_s() -> float:
    """Seconds since this process started (a lower bound within one clock tick; see the module doc)."""
    mark_entry()
    since_entry = time.perf_counter() - _ENTRY["perf"]
    now, entry = _boottime(), _ENTRY["boottime"]
    start = kernel_start_boottime()
    if now is None or entry is None or start is None:
        return since_entry
    started, tick = start
    if not (entry - MAX_STARTUP_S <= started <= entry):
        return since_entry
    return max(now - min(started + tick, entry), since_entry)


class Phases:
    """Named marks on the monotonic clock; durations between consecutive marks in milliseconds."""

    def __init__(self, marks: list | None = None) -> None:
        self.marks: list = list(marks or [])

    def mark(self, name: str) -> None:
        """The phase `name` ends now (it began at the previous mark)."""
        self.marks.append((name, time.perf_counter()))

    def durations_ms(self) -> dict:
        """{phase: ms} in order; a phase marked twice adds up."""
        out: dict = {}
        for (_, before), (name, after) in zip(self.marks, self.marks[1:]):  # noqa: B905 (Python 3.9)
            out[name] = round(out.get(name, 0.0) + (after - before) * 1000.0, 3)
        return out

    def to_wire(self) -> list:
        return [[name, t] for name, t in self.marks]

    @classmethod
    def from_wire(cls, marks: list) -> Phases:
        return cls([(str(name), float(t)) for name, t in marks or []])
