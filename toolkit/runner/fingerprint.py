"""Who is this device: hostname, serial, model, SoC, OS, kernel, arch, CPUs, software versions.

Each field has an ordered list of sources (device tree, Android properties, DMI, /proc/cpuinfo,
os-release); the first that answers wins. The same table serves the runner (reading files on the
device) and the controller (parsing `DUMP_SCRIPT` output from devices without Python).
"""

from __future__ import annotations

import os

FILES = (
    "/proc/device-tree/model",
    "/proc/device-tree/serial-number",
    "/proc/device-tree/compatible",
    "/sys/class/dmi/id/sys_vendor",
    "/sys/class/dmi/id/product_name",
    "/etc/os-release",
    "/proc/cpuinfo",
)

# POSIX sh (toybox on Android): the same facts as text, for devices reached without Python.
DUMP_SCRIPT = (
    "for f in " + " ".join(FILES) + "; do "
    '[ -r "$f" ] && { echo "@@file $f"; tr "\\000" "\\n" < "$f" 2>/dev/null; echo; }; '
    "done; "
    'echo "@@getprop"; getprop 2>/dev/null; '
    'echo "@@uname"; uname -n 2>/dev/null; uname -r 2>/dev/null; uname -m 2>/dev/null; '
    'echo "@@nproc"; nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo; true'
)


class Facts:
    """Raw facts about a device: files, Android properties, uname, CPU count."""

    def __init__(self, files: dict, props: dict, uname: tuple, cpu_count: int | None) -> None:
        self.files = files
        self.props = props
        self.hostname, self.kernel, self.arch = uname
        self.cpu_count = cpu_count

    def file(self, path: str) -> str | None:
        text = self.files.get(path)
        return text.strip() if text and text.strip() else None

    def prop(self, key: str) -> str | None:
        value = self.props.get(key, "").strip()
        return value or None

    def cpuinfo(self, key: str) -> str | None:
        for line in (self.file("/proc/cpuinfo") or "").splitlines():
            name, _, value = line.partition(":")
            if name.strip().lower() == key.lower() and value.strip():
                return value.strip()
        return None

    def os_release(self, key: str) -> str | None:
        for line in (self.file("/etc/os-release") or "").splitlines():
            name, _, value = line.partition("=")
            if name.strip() == key:
                return value.strip().strip('"') or None
        return None


def parse_getprop(text: str) -> dict:
    """`[ro.product.model]: [Pixel 8]` lines -> {key: value}."""
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and "]: [" in line and line.endswith("]"):
            key, _, value = line[1:-1].partition("]: [")
            props[key] = value
    return props


def local_facts() -> Facts:
    """Facts of the machine this code runs on."""
    files = {}
    for path in FILES:
        try:
            with open(path, "rb") as handle:
                files[path] = handle.read(1 << 20).replace(b"\0", b"\n").decode("utf-8", "replace")
        except OSError:
            continue
    return Facts(files, _local_getprop(), _uname(), os.cpu_count())


def _uname() -> tuple:
    """(hostname, kernel release, machine); os.uname() spares the runner importing `platform`."""
    if hasattr(os, "uname"):
        info = os.uname()
        return (info.nodename or None, info.release or None, info.machine or None)
    import platform

    return (platform.node() or None, platform.release() or None, platform.machine() or None)


def _on_path(program: str) -> str | None:
    """shutil.which for one plain program name (the runner spares itself importing shutil)."""
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _local_getprop() -> dict:
    """Android properties; elsewhere there is no getprop (and no subprocess import to pay for)."""
    getprop = _on_path("getprop")
    if not getprop:
        return {}
    import subprocess

    try:
        out = subprocess.run([getprop], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_getprop(out)


def parse_dump(text: str) -> Facts:
    """Facts from the output of DUMP_SCRIPT."""
    sections: dict = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
    files = {key[len("file ") :]: "\n".join(lines) for key, lines in sections.items() if key.startswith("file ")}
    uname_lines = [line.strip() for line in sections.get("uname", [])] + [None, None, None]
    nproc = "".join(sections.get("nproc", [])).strip()
    cpu_count = int(nproc) if nproc.isdigit() else None
    props = parse_getprop("\n".join(sections.get("getprop", [])))
    return Facts(files, props, tuple(x or None for x in uname_lines[:3]), cpu_count)


def _first_line(text: str | None) -> str | None:
    return text.splitlines()[0].strip() if text else None


def _join(*parts: str | None) -> str | None:
    present = [p for p in parts if p]
    return " ".join(present) if present else None


def _android_os(facts: Facts) -> str | None:
    release = facts.prop("ro.build.version.release")
    return f"Android {release}" if release else None


def _dmi_model(facts: Facts) -> str | None:
    return _join(facts.file("/sys/class/dmi/id/sys_vendor"), facts.file("/sys/class/dmi/id/product_name"))


def _android_model(facts: Facts) -> str | None:
    model = facts.prop("ro.product.model")
    maker = facts.prop("ro.product.manufacturer")
    if model and maker and not model.lower().startswith(maker.lower()):
        return f"{maker} {model}"
    return model


def _devicetree_soc(facts: Facts) -> str | None:
    compatible = [line.strip() for line in (facts.file("/proc/device-tree/compatible") or "").splitlines()]
    compatible = [c for c in compatible if c]
    return compatible[-1] if compatible else None


# field -> sources in order of trust. Adding a source is adding one lambda here.
SOURCES: dict = {
    "hostname": [lambda f: f.hostname, lambda f: f.prop("net.hostname")],
    "serial": [lambda f: f.prop("ro.serialno"), lambda f: _first_line(f.file("/proc/device-tree/serial-number"))],
    "model": [
        lambda f: _first_line(f.file("/proc/device-tree/model")),
        _android_model,
        _dmi_model,
        lambda f: f.cpuinfo("model name"),
    ],
    "soc": [
        lambda f: _join(f.prop("ro.soc.manufacturer"), f.prop("ro.soc.model")),
        lambda f: f.prop("ro.board.platform"),
        _devicetree_soc,
        lambda f: f.cpuinfo("Hardware"),
        lambda f: f.cpuinfo("model name"),
    ],
    "os": [_android_os, lambda f: f.os_release("PRETTY_NAME")],
    "kernel": [lambda f: f.kernel],
    "arch": [lambda f: f.arch, lambda f: f.prop("ro.product.cpu.abi")],
}


def fingerprint(facts: Facts) -> dict:
    """The device part of toolkit.results.Fingerprint (software versions are added by the caller)."""
    out: dict = {}
    for name, sources in SOURCES.items():
        out[name] = next((value for value in (source(facts) for source in sources) if value), None)
    out["cpu_count"] = facts.cpu_count
    return out
