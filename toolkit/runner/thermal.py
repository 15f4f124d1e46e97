"""Thermal zones and CPU clocks from Linux/Android sysfs, and the optional cooldown wait.

Readable by the runner directly (files) and by the controller through a shell on devices without
Python (benchmark_model mode: `SYSFS_DUMP_SCRIPT` prints the same readings as text lines).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# (folder under the sysfs root, entry prefix): thermal_zone0, thermal_zone1, ...; cpu0, cpu1, ...
THERMAL_ZONES = ("sys/class/thermal", "thermal_zone")
CPUS = ("sys/devices/system/cpu", "cpu")
# A clock that moved by more than this fraction between before and after counts as changed.
CLOCK_TOLERANCE = 0.05

# POSIX sh, for devices reached without Python. One line per zone and per CPU.
SYSFS_DUMP_SCRIPT = (
    "for z in /sys/class/thermal/thermal_zone*; do "
    '[ -r "$z/temp" ] && echo "zone ${z##*/} $(cat "$z/temp" 2>/dev/null) $(cat "$z/type" 2>/dev/null)"; '
    "done; "
    "for c in /sys/devices/system/cpu/cpu[0-9]*; do f=$c/cpufreq; "
    '[ -r "$f/scaling_cur_freq" ] && echo "cpu ${c##*/} $(cat "$f/scaling_cur_freq") '
    '$(cat "$f/scaling_min_freq" 2>/dev/null) $(cat "$f/scaling_max_freq" 2>/dev/null)"; '
    "done; true"
)


@dataclass
class Snapshot:
    """Temperatures (°C by zone name) and clocks (kHz by cpuN) at one moment."""

    temps_c: dict = field(default_factory=dict)
    cpu_khz: dict = field(default_factory=dict)
    cpu_limits_khz: dict = field(default_factory=dict)  # cpuN -> (min, max)


def to_celsius(raw: float) -> float:
    """sysfs reports millidegrees; some Android zones report decidegrees or degrees."""
    if abs(raw) >= 1000:
        return raw / 1000.0
    if abs(raw) > 150:
        return raw / 10.0
    return float(raw)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _zone_number(path: str) -> int:
    match = re.search(r"(\d+)$", path)
    return int(match.group(1)) if match else -1


def _name_zones(entries: Sequence[tuple]) -> dict:
    """(zone dir name, type, °C) -> {name: °C}; the type names a zone unless two zones share it."""
    counts: dict = {}
    for _, kind, _ in entries:
        counts[kind] = counts.get(kind, 0) + 1
    named = {}
    for zone, kind, celsius in entries:
        named[kind if counts[kind] == 1 and kind else f"{kind or 'zone'}/{zone}"] = celsius
    return named


def _numbered(root: str, where: tuple[str, str]) -> list[str]:
    """Paths of the entries named prefix + number in a sysfs folder, in number order.

    (os.listdir, not glob: the runner reads these at every profile and glob costs an import.)
    """
    folder, prefix = os.path.join(root, where[0]), where[1]
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    picked = [name for name in names if name.startswith(prefix) and name[len(prefix) : len(prefix) + 1].isdigit()]
    return sorted((os.path.join(folder, name) for name in picked), key=_zone_number)


def read_snapshot(root: str = "/") -> Snapshot:
    """Read every thermal zone and CPU clock under `root` (a sysfs mirror in tests, '/' on devices)."""
    zones = []
    for path in _numbered(root, THERMAL_ZONES):
        raw = _read_int(os.path.join(path, "temp"))
        if raw is None:
            continue
        zones.append((os.path.basename(path), _read_text(os.path.join(path, "type")) or "", to_celsius(raw)))
    snapshot = Snapshot(temps_c=_name_zones(zones))
    for path in _numbered(root, CPUS):
        freq = os.path.join(path, "cpufreq")
        cur = _read_int(os.path.join(freq, "scaling_cur_freq"))
        if cur is None:
            continue
        cpu = os.path.basename(path)
        snapshot.cpu_khz[cpu] = cur
        limits = (_read_int(os.path.join(freq, "scaling_min_freq")), _read_int(os.path.join(freq, "scaling_max_freq")))
        if None not in limits:
            snapshot.cpu_limits_khz[cpu] = limits
    return snapshot


def parse_sysfs_dump(text: str) -> Snapshot:
    """Parse the output of SYSFS_DUMP_SCRIPT into a Snapshot."""
    zones = []
    snapshot = Snapshot()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "zone" and _is_int(parts[2]):
            zones.append((parts[1], " ".join(parts[3:]), to_celsius(int(parts[2]))))
        elif len(parts) >= 3 and parts[0] == "cpu" and _is_int(parts[2]):
            snapshot.cpu_khz[parts[1]] = int(parts[2])
            if len(parts) >= 5 and _is_int(parts[3]) and _is_int(parts[4]):
                snapshot.cpu_limits_khz[parts[1]] = (int(parts[3]), int(parts[4]))
    zones.sort(key=lambda entry: _zone_number(entry[0]))
    snapshot.temps_c = _name_zones(zones)
    return snapshot


def _is_int(text: str) -> bool:
    return bool(re.fullmatch(r"-?\d+", text))


def pick_zones(temps_c: dict, wanted: Sequence[str] | None) -> dict:
    """The zones a device profile names (by type or name); all zones when it names none."""
    if not wanted:
        return dict(temps_c)
    wanted_set = set(wanted)
    return {name: c for name, c in temps_c.items() if name in wanted_set or name.split("/")[0] in wanted_set}


def clocks_changed(before: Snapshot, after: Snapshot, tolerance: float = CLOCK_TOLERANCE) -> bool | None:
    """True if a CPU's clock or its max limit moved during measurement; None without cpufreq."""
    common = set(before.cpu_khz) & set(after.cpu_khz)
    if not common:
        return None
    for cpu in common:
        a, b = before.cpu_khz[cpu], after.cpu_khz[cpu]
        if abs(b - a) > tolerance * max(a, b, 1):
            return True
        old_max = before.cpu_limits_khz.get(cpu, (None, None))[1]
        new_max = after.cpu_limits_khz.get(cpu, (None, None))[1]
        if None not in (old_max, new_max) and old_max != new_max:
            return True
    return False


def wait_for_cooldown(
    threshold_c: float,
    max_s: float,
    read: Callable[[], dict],
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple:
    """Wait until the hottest zone from `read()` is below `threshold_c`, at most `max_s`.

    Returns (waited seconds, reached: True | False | None when there is no zone to read).
    """
    start = clock()
    while True:
        temps = read()
        if not temps:
            return clock() - start, None
        if max(temps.values()) < threshold_c:
            return clock() - start, True
        if clock() - start >= max_s:
            return clock() - start, False
        sleep(min(poll_s, max(max_s - (clock() - start), 0.0)))
