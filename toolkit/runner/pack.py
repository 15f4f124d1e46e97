"""Build runner.pyz: the device runner as one deterministic zipapp.

It holds toolkit/__init__.py, toolkit/errors.py, toolkit/runner/ and delegates/ — nothing else —
with fixed timestamps, permissions and file order, so the same sources always give the same bytes
and the same SHA-256, which names the file in each device's cache. Controller side (not packed).

Next to each module sits its bytecode for the Python building the archive (unchecked hash-based
.pyc, PEP 552, deterministic): a device with the same Python version skips compiling the runner
at every start (zipimport cannot cache bytecode inside an archive); any other version ignores
the .pyc (wrong magic) and compiles the source.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHEBANG = b"#!/usr/bin/env python3\n"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
PACKED_SUFFIXES = (".py", ".json", ".yaml")
NOT_PACKED = {"toolkit/runner/pack.py"}
MAIN = b"from toolkit.runner.__main__ import exit_now, main\n\nexit_now(main())\n"


@dataclass(frozen=True)
class RunnerPackage:
    """The built zipapp: where it is on this machine, its hash and size."""

    path: Path
    sha256: str
    size: int


def packed_files(root: Path = ROOT) -> list:
    """(archive name, source path) of everything the runner needs, sorted by name."""
    files = [
        ("toolkit/__init__.py", root / "toolkit" / "__init__.py"),
        ("toolkit/errors.py", root / "toolkit" / "errors.py"),
    ]
    for package in ("toolkit/runner", "delegates"):
        for path in sorted((root / package).rglob("*")):
            name = path.relative_to(root).as_posix()
            if (
                path.is_file()
                and path.suffix in PACKED_SUFFIXES
                and "__pycache__" not in path.parts
                and name not in NOT_PACKED
            ):
                files.append((name, path))
    return sorted(files)


# Compiles in a fresh, isolated interpreter: marshal output depends on reference counts (shared
# interned strings), so the same source compiled in a busy process can give different bytes.
_COMPILE = """
import base64, json, os, py_compile, sys, tempfile
from py_compile import PycInvalidationMode
out = {}
with tempfile.TemporaryDirectory() as tmp:
    src, pyc = os.path.join(tmp, "m.py"), os.path.join(tmp, "m.pyc")
    for name, data in json.load(sys.stdin).items():
        with open(src, "wb") as f:
            f.write(base64.b64decode(data))
        py_compile.compile(src, cfile=pyc, dfile=name, doraise=True,
                           invalidation_mode=PycInvalidationMode.UNCHECKED_HASH)
        with open(pyc, "rb") as f:
            out[name] = base64.b64encode(f.read()).decode()
json.dump(out, sys.stdout)
"""


def _bytecode(sources: dict[str, bytes]) -> dict[str, bytes]:
    """Unchecked hash-based .pyc (PEP 552) for this Python, the same bytes for the same sources."""
    payload = json.dumps({name: base64.b64encode(data).decode() for name, data in sources.items()})
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _COMPILE], input=payload, capture_output=True, text=True, check=True
    ).stdout
    return {name: base64.b64decode(data) for name, data in json.loads(out).items()}


def archive_entries(root: Path = ROOT) -> list[tuple[str, bytes]]:
    """(name, bytes) of every archive member, sources and their bytecode, in a fixed order."""
    sources = [("__main__.py", MAIN)] + [(n, p.read_bytes()) for n, p in packed_files(root)]
    modules = {name: data for name, data in sources if name != "__main__.py"}
    compiled = [(name + "c", data) for name, data in _bytecode(modules).items()]
    return sorted(sources + compiled)


def build_bytes(root: Path = ROOT) -> bytes:
    """The zipapp's bytes: shebang, then a zip with fixed metadata."""
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in archive_entries(root):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever machine builds it
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


def _sources_signature(root: Path) -> tuple:
    return tuple((name, path.stat().st_mtime_ns, path.stat().st_size) for name, path in packed_files(root))


@lru_cache(maxsize=4)
def _build_cached(root: str, signature: tuple, cache_dir: str) -> RunnerPackage:
    data = build_bytes(Path(root))
    digest = hashlib.sha256(data).hexdigest()
    target = Path(cache_dir) / f"runner-{digest[:16]}.pyz"
    if not (target.is_file() and target.stat().st_size == len(data)):
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temp.write_bytes(data)
        os.replace(temp, target)
    return RunnerPackage(target, digest, len(data))


def default_cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "edgetk" / "runner"


def build_runner(cache_dir: Path | None = None, root: Path = ROOT) -> RunnerPackage:
    """Build (or reuse) runner.pyz for the current sources; returns its local path and hash."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    with _BUILD_LOCK:  # farm threads start together: one builds, the others reuse its answer
        return _build_cached(str(root), _sources_signature(root), str(cache))


_BUILD_LOCK = threading.Lock()
