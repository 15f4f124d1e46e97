"""The `local` transport: this machine, every command in a child process."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from toolkit.errors import BadInputError, RemoteCommandError
from toolkit.transports.base import Command, CommandResult, Stdin, Transport, atomic_local_copy, decode, run_process
from toolkit.transports.options import LocalOptions


def default_local_workdir() -> str:
    """$XDG_CACHE_HOME/edgetk/local, or ~/.cache/edgetk/local."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "edgetk", "local")


class LocalTransport(Transport):
    """Run commands and copy files on this machine."""

    kind = "local"

    def __init__(self, uri: str = "local", options: LocalOptions | None = None) -> None:
        options = options or LocalOptions()
        workdir = os.path.abspath(os.path.expanduser(options.workdir or default_local_workdir()))
        super().__init__(uri, workdir, options.python or sys.executable)
        self.options = options

    def _run(self, command: Command, timeout: float | None, stdin: Stdin) -> CommandResult:
        try:
            out = run_process(command.argv, timeout=timeout, stdin=stdin)
        except (FileNotFoundError, PermissionError) as exc:
            # Mirror what a shell reports (127 not found, 126 not executable), as ssh and adb do.
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            return CommandResult(command.argv, code, "", f"{command.argv[0]}: {exc.strerror}\n", 0.0)
        return CommandResult(command.argv, out.returncode, decode(out.stdout), decode(out.stderr), out.duration_s)

    def push(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a file into place through a temporary name (atomic on one filesystem)."""
        atomic_local_copy(_existing_file(local), Path(remote))

    def pull(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file out through a temporary name."""
        source = Path(remote)
        if not source.is_file():
            raise RemoteCommandError(f"{remote}: no such file on local", "check the path")
        atomic_local_copy(source, Path(local))

    def exists(self, remote: str) -> bool:
        return os.path.lexists(remote)

    def mkdir(self, remote: str) -> None:
        os.makedirs(remote, exist_ok=True)

    def remove(self, remote: str) -> None:
        path = Path(remote)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def sha256(self, remote: str) -> str | None:
        import hashlib

        path = Path(remote)
        if not path.is_file():
            return None
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def size(self, remote: str) -> int | None:
        path = Path(remote)
        return path.stat().st_size if path.is_file() else None


def _existing_file(local: str | os.PathLike[str]) -> Path:
    path = Path(local)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file to upload", "check the path")
    return path
