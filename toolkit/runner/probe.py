"""Before running: is the device able to run the runner? One round trip answers, and prepares.

`PROBE_SCRIPT` runs as `python -c PROBE_SCRIPT '<json>'` with whatever Python the device has —
written so that even Python 2.7 gets far enough to report its version. It creates the cache
folders, says which cached files already exist, and lists the interpreter's version, machine and
which of numpy and the TFLite runtimes it can import (found on sys.path, not imported: fast).
`check_setup` turns that report into a specific DeviceSetupError with the pip command to fix it.
"""

from __future__ import annotations

import json

from toolkit.errors import DeviceSetupError

MIN_PYTHON = (3, 9)
PROBE_MARK = "EDGETK-PROBE "
RUNTIME_MODULES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
RUNTIME_DISTRIBUTIONS = {
    "ai_edge_litert": "ai-edge-litert",
    "tflite_runtime": "tflite-runtime",
    "tensorflow": "tensorflow",
}

PROBE_SCRIPT = r"""
import sys, os, json, platform
args = json.loads(sys.argv[1])
for d in args.get("mkdirs", []):
    try:
        os.makedirs(d)
    except OSError:
        pass
def found(name):
    try:
        from importlib.machinery import PathFinder
        return PathFinder.find_spec(name) is not None
    except Exception:
        return False
def version(dist):
    try:
        from importlib.metadata import version as v
        return v(dist)
    except Exception:
        return None
mods = ("numpy", "ai_edge_litert", "tflite_runtime", "tensorflow")
dists = {"numpy": "numpy", "ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "tensorflow": "tensorflow"}
out = {
    "python": list(sys.version_info[:3]),
    "executable": sys.executable,
    "machine": platform.machine(),
    "modules": dict((m, found(m)) for m in mods),
    "versions": dict((m, version(dists[m])) for m in mods),
    "exists": dict((p, os.path.exists(p)) for p in args.get("exists", [])),
}
sys.stdout.write("\nEDGETK-PROBE " + json.dumps(out) + "\n")
"""

# Hints for devices that need a package. 32-bit ARM has no ai-edge-litert wheels.
_THIRTY_TWO_BIT = ("armv7l", "armv6l", "armv8l", "arm", "i686")


def parse_probe(stdout: str) -> dict | None:
    """The probe's report, or None when the output holds none (no Python, or one too old to run it)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(PROBE_MARK):
            try:
                return json.loads(line[len(PROBE_MARK) :])
            except ValueError:
                return None
    return None


def install_hint(report: dict, python: str) -> str:
    """The pip command that gets numpy and a TFLite runtime onto this device."""
    if report.get("machine") in _THIRTY_TWO_BIT:
        return f"on the device run: {python} -m pip install tflite-runtime 'numpy<2' (32-bit ARM has no ai-edge-litert wheels)"
    return f"on the device run: {python} -m pip install ai-edge-litert numpy"


def _python_too_old(report: dict, python: str, runtime: str | None) -> DeviceSetupError | None:
    version = tuple(report.get("python") or (0,))
    if version >= MIN_PYTHON:
        return None
    shown = ".".join(str(v) for v in version)
    return DeviceSetupError(
        f"the device's {python} is Python {shown}; the runner needs Python >= 3.9",
        "install Python 3.9 or newer on the device and point the profile's runner.python (or --python) at it",
        python=python,
        version=shown,
    )


def _numpy_missing(report: dict, python: str, runtime: str | None) -> DeviceSetupError | None:
    if report.get("modules", {}).get("numpy"):
        return None
    return DeviceSetupError(f"numpy is not installed for {python} on the device", install_hint(report, python))


def _runtime_missing(report: dict, python: str, runtime: str | None) -> DeviceSetupError | None:
    modules = report.get("modules", {})
    if runtime:
        if modules.get(runtime):
            return None
        dist = RUNTIME_DISTRIBUTIONS.get(runtime, runtime)
        return DeviceSetupError(
            f"the requested TFLite runtime {runtime} is not installed for {python} on the device",
            f"on the device run: {python} -m pip install {dist}, or choose another runtime",
        )
    if any(modules.get(m) for m in RUNTIME_MODULES):
        return None
    return DeviceSetupError(
        f"no TFLite runtime (ai_edge_litert, tflite_runtime or tensorflow) for {python} on the device",
        install_hint(report, python),
    )


def _tflite_runtime_with_numpy2(report: dict, python: str, runtime: str | None) -> DeviceSetupError | None:
    modules, versions = report.get("modules", {}), report.get("versions", {})
    only_tflite_runtime = (
        modules.get("tflite_runtime") and not modules.get("ai_edge_litert") and not modules.get("tensorflow")
    )
    chosen = runtime == "tflite_runtime" or (runtime is None and only_tflite_runtime)
    numpy_major = str(versions.get("numpy") or "0").split(".")[0]
    if chosen and numpy_major.isdigit() and int(numpy_major) >= 2:
        return DeviceSetupError(
            f"tflite-runtime does not work with numpy {versions.get('numpy')} on the device",
            f"on the device run: {python} -m pip install 'numpy<2'",
        )
    return None


# In order: each check assumes the ones before it passed.
CHECKS: tuple = (_python_too_old, _numpy_missing, _runtime_missing, _tflite_runtime_with_numpy2)


def check_setup(report: dict, python: str, runtime: str | None = None) -> None:
    """Raise the first DeviceSetupError the probe report calls for."""
    for check in CHECKS:
        error = check(report, python, runtime)
        if error is not None:
            raise error
