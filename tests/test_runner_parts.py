"""Device-side parts of the runner: thermal/clock readings, fingerprint, protocol, memory, setup probe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.servers.procs import process_state, wait_for
from toolkit.errors import DeviceSetupError
from toolkit.runner import thermal
from toolkit.runner.fingerprint import DUMP_SCRIPT, Facts, fingerprint, local_facts, parse_dump, parse_getprop
from toolkit.runner.probe import PROBE_SCRIPT, check_setup, parse_probe
from toolkit.runner.protocol import decode_request, encode_request, frame, unframe

# --- a sysfs mirror laid out as on a Raspberry Pi 5 ---------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def make_sysfs(root: Path, zones: list[tuple[str, int]], cpus: dict[str, tuple[int, int, int]]) -> Path:
    """zones: (type, raw temp); cpus: name -> (cur, min, max) kHz."""
    for index, (kind, raw) in enumerate(zones):
        zone = root / "sys/class/thermal" / f"thermal_zone{index}"
        _write(zone / "type", kind)
        _write(zone / "temp", str(raw))
    (root / "sys/class/thermal/cooling_device0").mkdir(parents=True, exist_ok=True)
    for cpu, (cur, low, high) in cpus.items():
        freq = root / "sys/devices/system/cpu" / cpu / "cpufreq"
        _write(freq / "scaling_cur_freq", str(cur))
        _write(freq / "scaling_min_freq", str(low))
        _write(freq / "scaling_max_freq", str(high))
    (root / "sys/devices/system/cpu/cpuidle").mkdir(parents=True, exist_ok=True)
    return root


PI5_CPUS = {f"cpu{i}": (2400000, 1500000, 2400000) for i in range(4)}


def test_read_snapshot_of_a_pi_like_sysfs(tmp_path):
    root = make_sysfs(tmp_path, [("cpu-thermal", 51234)], PI5_CPUS)
    snap = thermal.read_snapshot(str(root))
    assert snap.temps_c == {"cpu-thermal": pytest.approx(51.234)}
    assert snap.cpu_khz == {f"cpu{i}": 2400000 for i in range(4)}
    assert snap.cpu_limits_khz["cpu3"] == (1500000, 2400000)


def test_zones_sharing_a_type_are_told_apart_and_units_are_normalized(tmp_path):
    root = make_sysfs(tmp_path, [("soc", 45000), ("soc", 47000), ("battery", 312), ("skin", 38)], {})
    temps = thermal.read_snapshot(str(root)).temps_c
    assert temps == {
        "soc/thermal_zone0": 45.0,
        "soc/thermal_zone1": 47.0,
        "battery": pytest.approx(31.2),  # decidegrees
        "skin": 38.0,  # degrees
    }
    assert thermal.pick_zones(temps, ["soc"]) == {"soc/thermal_zone0": 45.0, "soc/thermal_zone1": 47.0}
    assert thermal.pick_zones(temps, ["skin"]) == {"skin": 38.0}
    assert thermal.pick_zones(temps, None) == temps


def test_no_thermal_zones_gives_an_empty_snapshot(tmp_path):
    snap = thermal.read_snapshot(str(tmp_path))
    assert (snap.temps_c, snap.cpu_khz) == ({}, {})
    assert thermal.clocks_changed(snap, snap) is None


def test_shell_dump_reads_the_same_as_python(tmp_path):
    """SYSFS_DUMP_SCRIPT (for devices without Python) run over a sysfs mirror bind-mounted on /sys."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare to bind-mount a sysfs mirror")
    root = make_sysfs(tmp_path, [("cpu-thermal", 61500), ("gpu", 58000)], PI5_CPUS)
    mounts = (
        f"mount --bind {root}/sys/class/thermal /sys/class/thermal && "
        f"mount --bind {root}/sys/devices/system/cpu /sys/devices/system/cpu && "
    )
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", mounts + thermal.SYSFS_DUMP_SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    parsed = thermal.parse_sysfs_dump(out)
    direct = thermal.read_snapshot(str(root))
    assert parsed == direct
    assert parsed.temps_c == {"cpu-thermal": 61.5, "gpu": 58.0}


def test_clocks_changed_detects_a_drop_or_a_lowered_limit():
    steady = thermal.Snapshot(cpu_khz={"cpu0": 2400000}, cpu_limits_khz={"cpu0": (1500000, 2400000)})
    dropped = thermal.Snapshot(cpu_khz={"cpu0": 1800000}, cpu_limits_khz={"cpu0": (1500000, 2400000)})
    capped = thermal.Snapshot(cpu_khz={"cpu0": 2400000}, cpu_limits_khz={"cpu0": (1500000, 2000000)})
    jitter = thermal.Snapshot(cpu_khz={"cpu0": 2390000}, cpu_limits_khz={"cpu0": (1500000, 2400000)})
    assert thermal.clocks_changed(steady, steady) is False
    assert thermal.clocks_changed(steady, jitter) is False
    assert thermal.clocks_changed(steady, dropped) is True
    assert thermal.clocks_changed(steady, capped) is True


def test_cooldown_waits_until_the_hottest_zone_is_below_the_threshold():
    readings = iter([{"a": 70.0, "b": 40.0}, {"a": 66.0, "b": 40.0}, {"a": 59.0, "b": 40.0}])
    now = [0.0]
    waited, reached = thermal.wait_for_cooldown(
        60.0,
        100.0,
        lambda: next(readings),
        poll_s=5.0,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    assert reached is True
    assert waited == 10.0


def test_cooldown_is_bounded_and_says_when_there_is_nothing_to_read():
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    waited, reached = thermal.wait_for_cooldown(50.0, 12.0, lambda: {"a": 80.0}, 5.0, sleep, lambda: now[0])
    assert (waited, reached) == (12.0, False)
    assert thermal.wait_for_cooldown(50.0, 12.0, dict, 5.0, sleep, lambda: now[0])[1] is None


# --- fingerprint --------------------------------------------------------------------------------

PI5_FILES = {
    "/proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\n",
    "/proc/device-tree/serial-number": "a1b2c3d4e5f60718\n",
    "/proc/device-tree/compatible": "raspberrypi,5-model-b\nbrcm,bcm2712\n",
    "/etc/os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n',
    "/proc/cpuinfo": "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nRevision\t: d04170\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n",
}

# `adb shell getprop` format.
PIXEL_GETPROP = """\
[ro.build.version.release]: [14]
[ro.product.manufacturer]: [Google]
[ro.product.model]: [Pixel 8]
[ro.serialno]: [3A121FDJH00ABC]
[ro.soc.manufacturer]: [Google]
[ro.soc.model]: [Tensor G3]
[ro.board.platform]: [zuma]
[ro.product.cpu.abi]: [arm64-v8a]
[net.hostname]: [Pixel-8]
"""


def test_fingerprint_of_a_raspberry_pi():
    fp = fingerprint(Facts(PI5_FILES, {}, ("raspberrypi", "6.6.51+rpt-rpi-2712", "aarch64"), 4))
    assert fp == {
        "hostname": "raspberrypi",
        "serial": "a1b2c3d4e5f60718",
        "model": "Raspberry Pi 5 Model B Rev 1.0",
        "soc": "brcm,bcm2712",
        "os": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.6.51+rpt-rpi-2712",
        "arch": "aarch64",
        "cpu_count": 4,
    }


def test_fingerprint_of_an_android_phone_from_getprop():
    props = parse_getprop(PIXEL_GETPROP)
    fp = fingerprint(Facts({}, props, (None, "5.15.137-android14", None), 9))
    assert fp["model"] == "Google Pixel 8"
    assert fp["soc"] == "Google Tensor G3"
    assert fp["os"] == "Android 14"
    assert fp["serial"] == "3A121FDJH00ABC"
    assert fp["hostname"] == "Pixel-8"
    assert fp["arch"] == "arm64-v8a"


def test_shell_dump_gives_the_same_fingerprint_as_reading_files_here():
    out = subprocess.run(["sh", "-c", DUMP_SCRIPT], capture_output=True, text=True, check=True).stdout
    assert fingerprint(parse_dump(out)) == fingerprint(local_facts())
    assert fingerprint(local_facts())["cpu_count"] == os.cpu_count()


# --- protocol -----------------------------------------------------------------------------------


def test_request_token_survives_quotes_newlines_and_unicode():
    request = {"model": '/tmp/it\'s a "model"\n.tflite', "zones": ["°C"], "n": 3}
    token = encode_request(request)
    assert token.isascii()
    assert " " not in token
    assert "'" not in token
    assert decode_request(token) == request


def test_framed_document_is_found_among_library_noise():
    nonce = "abc123"
    noise = 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n{"not": "it"}'
    fake = frame({"forged": True}, "othernonce")
    stdout = noise + fake + frame({"ok": 1}, nonce) + "trailing noise without newline"
    assert unframe(stdout, nonce) == {"ok": 1}
    assert unframe(noise + fake, nonce) is None
    assert unframe("", nonce) is None


# --- memory -------------------------------------------------------------------------------------


def test_peak_memory_counts_what_the_model_load_allocates():
    """In a fresh child: reset the peak, allocate and touch 64 MiB, free it; the peak remembers."""
    code = textwrap.dedent(
        """
        import json, numpy
        from toolkit.runner.memory import MemoryProbe
        probe = MemoryProbe(); probe.start()
        block = numpy.ones(64 * 1024 * 1024, dtype=numpy.uint8); del block
        print(json.dumps({"memory": probe.finish(), "reset": probe.peak_was_reset}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    memory = result["memory"]
    assert memory["source"] == "vmhwm"
    assert result["reset"] is True
    assert memory["delta_bytes"] >= 60 * 1024 * 1024
    assert memory["peak_rss_bytes"] == memory["baseline_rss_bytes"] + memory["delta_bytes"]


# --- setup probe with real interpreters ---------------------------------------------------------


def _probe(python: str, tmp_path: Path) -> tuple[dict | None, subprocess.CompletedProcess]:
    cached = tmp_path / "cached.bin"
    cached.write_bytes(b"x")
    argument = json.dumps(
        {"mkdirs": [str(tmp_path / "cache" / "models")], "exists": [str(cached), str(tmp_path / "no")]}
    )
    proc = subprocess.run([python, "-c", PROBE_SCRIPT, argument], capture_output=True, text=True)
    return parse_probe(proc.stdout), proc


def test_probe_with_the_venv_python_passes_and_prepares_the_cache(tmp_path):
    report, _ = _probe(sys.executable, tmp_path)
    check_setup(report, "python3")
    assert (tmp_path / "cache" / "models").is_dir()
    assert report["exists"] == {str(tmp_path / "cached.bin"): True, str(tmp_path / "no"): False}
    assert report["modules"]["numpy"]
    assert report["modules"]["ai_edge_litert"]
    check_setup(report, "python3", runtime="tflite_runtime")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A real Python 3 with nothing installed: a fresh venv of the interpreter running the tests."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


@pytest.fixture(scope="module")
def numpy_only_python(bare_python) -> str:
    """A real Python 3 that has numpy but no TFLite runtime (numpy linked in from our venv)."""
    import numpy

    site = Path(
        subprocess.check_output([bare_python, "-c", "import site; print(site.getsitepackages()[0])"], text=True).strip()
    )
    shelf = site.parent / "numpy-only"
    shelf.mkdir(exist_ok=True)
    target = shelf / "numpy"
    if not target.exists():
        target.symlink_to(Path(numpy.__file__).parent)
    (site / "numpy-only.pth").write_text(str(shelf) + "\n")
    return bare_python


def test_probe_without_numpy_names_the_pip_command(tmp_path, bare_python):
    report, _ = _probe(bare_python, tmp_path)
    # Without numpy the numpy check fires first; the same report is missing the runtime too.
    assert report["modules"]["numpy"] is False
    with pytest.raises(DeviceSetupError) as excinfo:
        check_setup(report, "/opt/py/bin/python3")
    assert "numpy is not installed" in excinfo.value.message
    assert "/opt/py/bin/python3 -m pip install ai-edge-litert numpy" in excinfo.value.hint


def test_probe_with_numpy_but_no_runtime_names_the_pip_command(tmp_path, bare_python, numpy_only_python):
    report, _ = _probe(numpy_only_python, tmp_path)
    assert report["modules"]["numpy"] is True
    with pytest.raises(DeviceSetupError) as excinfo:
        check_setup(report, "python3")
    assert "no TFLite runtime" in excinfo.value.message
    assert "pip install ai-edge-litert" in excinfo.value.hint
    with pytest.raises(DeviceSetupError, match="tflite_runtime is not installed"):
        check_setup(report, "python3", runtime="tflite_runtime")


def test_32_bit_arm_gets_the_tflite_runtime_hint_and_numpy2_is_refused():
    report = {"python": [3, 11, 2], "machine": "armv7l", "modules": {"numpy": True}, "versions": {"numpy": "1.26.4"}}
    with pytest.raises(DeviceSetupError) as excinfo:
        check_setup(report, "python3")
    assert "pip install tflite-runtime 'numpy<2'" in excinfo.value.hint
    report["modules"]["tflite_runtime"] = True
    check_setup(report, "python3")
    report["versions"]["numpy"] = "2.1.0"
    with pytest.raises(DeviceSetupError, match=r"numpy 2\.1\.0") as excinfo:
        check_setup(report, "python3")
    assert "'numpy<2'" in excinfo.value.hint


def _old_pythons() -> list[str]:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for python in sorted(root.glob("*/bin/python")) if root.is_dir() else []:
        version = tuple(int(x) for x in python.parent.parent.name.split(".")[:2] if x.isdigit())
        if len(version) == 2 and version < (3, 9):
            found.append(str(python))
    return found


@pytest.mark.parametrize(
    "python", _old_pythons() or [pytest.param(None, marks=pytest.mark.skip("no Python < 3.9 here"))]
)
def test_probe_with_an_old_python_reports_its_version(tmp_path, python):
    report, proc = _probe(python, tmp_path)
    assert report is not None, proc.stderr
    with pytest.raises(DeviceSetupError, match=r"needs Python >= 3\.9"):
        check_setup(report, python)


# --- run folders of runs that were killed ----------------------------------------------------------


def test_abandoned_run_folders_are_removed_and_live_ones_kept(tmp_path):
    from toolkit.runner.supervisor import ABANDONED_AFTER_S, PID_FILE, pid_file_text, remove_abandoned_runs

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    me = os.getpid()
    pid_files = {
        "dead": f"{finished.pid} 1",  # gone (and should the PID be reused meanwhile, not started at tick 1)
        "live": pid_file_text(me),
        "reused": f"{me} 1",  # a live PID, but not the process that wrote the file
        "legacy": str(me),  # a PID without start time (no /proc on that device): alive while the PID is
        "fresh": None,  # no PID file yet: a run starting now
        "stale": None,  # no PID file for a day
        "damaged": "",
    }
    for name, text in pid_files.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "runner.log").write_text("x")
        if text is not None:
            (folder / PID_FILE).write_text(text)
    old = time.time() - ABANDONED_AFTER_S - 60
    os.utime(tmp_path / "stale", (old, old))
    remove_abandoned_runs(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged", "fresh", "legacy", "live"]
    assert pid_file_text(me).startswith(f"{me} ")


def test_a_run_folder_loses_its_pid_file_last(tmp_path, monkeypatch):
    from toolkit.runner.supervisor import PID_FILE, remove_folder

    for name in ("request.json", PID_FILE, "runner.log", "result.json"):
        (tmp_path / name).write_text("x")
    removed = []
    real_unlink = os.unlink
    monkeypatch.setattr(os, "unlink", lambda path: (removed.append(os.path.basename(path)), real_unlink(path))[1])
    remove_folder(str(tmp_path))
    assert removed[-1] == PID_FILE
    assert sorted(removed) == sorted(["request.json", PID_FILE, "runner.log", "result.json"])
    assert not tmp_path.exists()


def test_a_run_folder_whose_supervisor_is_a_zombie_is_removed(tmp_path):
    """A killed supervisor reparented to an init that has not reaped it yet still answers kill(pid, 0)."""
    from toolkit.runner.supervisor import PID_FILE, pid_file_text, remove_abandoned_runs

    exited = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie until reaped
    try:
        wait_for(lambda: process_state(exited.pid) == "Z", 10, "the child to exit")
        folder = tmp_path / "killed"
        folder.mkdir()
        (folder / PID_FILE).write_text(pid_file_text(exited.pid))
        remove_abandoned_runs(str(tmp_path))
        assert not folder.exists()
    finally:
        exited.wait()
