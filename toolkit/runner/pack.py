"""Build runner.pyz: the device runner as one deterministic zipapp.

It holds toolkit/__init__.py, toolkit/errors.py, toolkit/runner/ and delegates/ — nothing else —
with fixed timestamps, permissions and file order, so the same sources always give the same bytes
and the same SHA-256, which names the file in each device's cache. Controller side (not packed).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHEBANG = b"#!/usr/bin/env python3\n"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
PACKED_SUFFIXES = (".py", ".json", ".yaml")
NOT_PACKED = {"toolkit/runner/pack.py"}
MAIN = b"from toolkit.runner.__main__ import main\n\nraise SystemExit(main())\n"


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


def build_bytes(root: Path = ROOT) -> bytes:
    """The zipapp's bytes: shebang, then a zip with fixed metadata."""
    buffer = io.BytesIO()
    buffer.write(SHEBANG)
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in [("__main__.py", MAIN)] + [(n, p.read_bytes()) for n, p in packed_files(root)]:
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
        temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temp.write_bytes(data)
        os.replace(temp, target)
    return RunnerPackage(target, digest, len(data))


def default_cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "edgetk" / "runner"


def build_runner(cache_dir: Path | None = None, root: Path = ROOT) -> RunnerPackage:
    """Build (or reuse) runner.pyz for the current sources; returns its local path and hash."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return _build_cached(str(root), _sources_signature(root), str(cache))
