"""The transport interface: run commands on a device and move files to and from it.

Every transport (local, ssh, adb) has the same small surface (STYLE.md #6): `run`, `push`,
`pull`, `exists`, `mkdir`, `remove`, `workdir`, `close`. Commands are argument lists (a frozen
`Command`); a failing command raises `RemoteCommandError` carrying the argv, exit code and the
last lines of its output. Uploads are atomic: a temporary name in the target folder, then a rename,
so an interrupted copy never leaves a file that looks complete.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import signal
import subprocess
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from toolkit.errors import CommandTimeoutError, RemoteCommandError

# How many trailing lines of stdout/stderr an error carries.
TAIL_LINES = 20
# Marker in temporary upload names; `is_temporary_name` recognizes them for cleanup.
TEMP_MARK = ".edgetk-tmp-"

Stdin = str | bytes | BinaryIO | None  # an open binary file is streamed, not read into memory

# Remote commands print their PID on stderr first (see ssh.py); the line is removed from results.
PID_MARK = "edgetk-remote-pid="
REPORT_PID = f"printf '{PID_MARK}%s\\n' \"$$\" >&2"
_PID_LINE = re.compile(rf"^{re.escape(PID_MARK)}(\d+)\r?\n", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    """An immutable argument list; the only way commands reach a process or a remote shell."""

    argv: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError("a command needs at least a program name")
        bad = [a for a in self.argv if not isinstance(a, str)]
        if bad:
            raise TypeError(f"command arguments must be strings, got {bad!r}")

    @classmethod
    def of(cls, argv: Sequence[str | os.PathLike[str]] | Command) -> Command:
        """Build a Command from a list (paths are converted to strings)."""
        if isinstance(argv, Command):
            return argv
        if isinstance(argv, (str, bytes)):
            raise TypeError("pass a list of arguments, not a string (no shell command lines)")
        return cls(tuple(os.fspath(a) for a in argv))

    def shell_line(self) -> str:
        """The argv quoted for a POSIX shell (what ssh and adb hand to the remote shell)."""
        return shlex.join(self.argv)

    def __str__(self) -> str:
        return self.shell_line()


@dataclass(frozen=True)
class CommandResult:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self, where: str = "") -> CommandResult:
        """Return self, or raise RemoteCommandError if the command exited non-zero."""
        if self.returncode != 0:
            raise command_failed(self, where)
        return self


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of text (errors show these, like pip's subprocess errors)."""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def command_failed(result: CommandResult, where: str = "") -> RemoteCommandError:
    """A RemoteCommandError for a command that exited non-zero."""
    line = shlex.join(result.argv)
    last = tail(result.stderr, 1) or tail(result.stdout, 1)
    place = f" on {where}" if where else ""
    message = f"`{_shorten(line)}` exited with {result.returncode}{place}" + (f": {last}" if last else "")
    return RemoteCommandError(
        message,
        "run it by hand on the device to see the full output (edgetk --debug shows the last lines)",
        argv=list(result.argv),
        returncode=result.returncode,
        stdout_tail=tail(result.stdout),
        stderr_tail=tail(result.stderr),
    )


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def temporary_name(final_path: str) -> str:
    """A unique hidden name in the same folder as final_path (same filesystem, so rename is atomic)."""
    folder, name = posixpath.split(final_path)
    return posixpath.join(folder, f".{name}{TEMP_MARK}{uuid.uuid4().hex[:12]}")


def is_temporary_name(path: str) -> bool:
    """True for names made by `temporary_name` (leftovers of interrupted uploads)."""
    return TEMP_MARK in posixpath.basename(path)


@dataclass(frozen=True)
class ProcessOutput:
    """Raw result of a local child process."""

    returncode: int
    stdout: bytes
    stderr: bytes
    duration_s: float


def run_process(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    stdin: Stdin = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    what: str | None = None,
    on_timeout: Callable[[bytes, bytes], None] | None = None,
) -> ProcessOutput:
    """Run a local child in its own process group; on timeout kill the whole group.

    The child gets its own session so a timeout or Ctrl-C can kill it together with anything it
    started (an ssh or adb client and its helpers) without touching our own process group.
    `what` names the command in the timeout message; `on_timeout(stdout, stderr)` runs after the kill, before the error is raised (the ssh
    transport uses it to kill the command on the device too).
    """
    if stdin is None or isinstance(stdin, (str, bytes)):
        data = stdin.encode() if isinstance(stdin, str) else stdin
        child_stdin: Any = subprocess.PIPE if data is not None else subprocess.DEVNULL
    else:
        data, child_stdin = None, stdin  # the child reads the file itself
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        stdin=child_stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = _kill_group(proc)
        if on_timeout is not None:
            on_timeout(out, err)
        raise CommandTimeoutError(
            f"{what or '`' + _shorten(shlex.join(argv)) + '`'} timed out after {timeout:g} s",
            "raise the timeout, or check whether the device is overloaded or hung",
            argv=list(argv),
            timeout_s=timeout,
            stdout_tail=tail(out.decode(errors="replace")),
            stderr_tail=tail(err.decode(errors="replace")),
        ) from None
    except BaseException:
        _kill_group(proc)
        raise
    return ProcessOutput(proc.returncode, out, err, time.perf_counter() - start)


def _kill_group(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """SIGKILL the child's process group; return everything it printed (read so far or after)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        out, err = proc.communicate(timeout=1)
    except subprocess.TimeoutExpired as expired:
        # Someone outside the group still holds our pipes (an ssh ControlMaster is handed the
        # client's descriptors): stop waiting. Popen keeps earlier reads, so nothing is lost.
        out, err = expired.output, expired.stderr
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return out or b"", err or b""


class Transport(ABC):
    """Run commands on one device and move files to and from it; a context manager."""

    kind: ClassVar[str]

    def __init__(self, uri: str, workdir: str, python: str | None = None) -> None:
        self.uri = uri
        self._workdir = workdir
        self.python = python  # interpreter for the Python runner on the device (None: not set)
        self.closed = False

    # --- commands -------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]] | Command,
        timeout: float | None = None,
        check: bool = True,
        stdin: Stdin = None,
    ) -> CommandResult:
        """Run argv on the device; raise RemoteCommandError on a non-zero exit when check is set."""
        command = Command.of(argv)
        result = self._run(command, timeout, stdin)
        if check and result.returncode != 0:
            raise command_failed(result, self.uri)
        return result

    @abstractmethod
    def _run(self, command: Command, timeout: float | None, stdin: Stdin) -> CommandResult:
        """Run one command and return its result whatever its exit code."""

    # --- files ----------------------------------------------------------------------------

    @abstractmethod
    def push(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy a local file to the device atomically (temporary name, then rename), creating its folder."""

    @abstractmethod
    def pull(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file from the device (the local file appears complete or not at all)."""

    def exists(self, remote: str) -> bool:
        """True if the path exists on the device."""
        return self.run(["test", "-e", remote], check=False).returncode == 0

    def mkdir(self, remote: str) -> None:
        """Create a folder and its parents on the device (no error if it exists)."""
        self.run(["mkdir", "-p", "--", remote])

    def remove(self, remote: str) -> None:
        """Delete a file or folder tree on the device (no error if it is missing)."""
        self.run(["rm", "-rf", "--", remote])

    def sha256(self, remote: str) -> str | None:
        """Hex SHA-256 of a file on the device, or None if it does not exist."""
        result = self.run(["sha256sum", "--", remote], check=False)
        if result.returncode != 0:
            return None
        digest = result.stdout.split(maxsplit=1)[0] if result.stdout.strip() else ""
        return digest.lower() if len(digest) == 64 else None

    def size(self, remote: str) -> int | None:
        """Size in bytes of a file on the device, or None if it does not exist."""
        result = self.run(["stat", "-c", "%s", "--", remote], check=False)
        text = result.stdout.strip()
        return int(text) if result.returncode == 0 and text.isdigit() else None

    @property
    def workdir(self) -> str:
        """Base folder for edgetk's files on the device (runner, model cache, run folders)."""
        return self._workdir

    # --- lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Release connections; safe to call twice."""
        self.closed = True

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"


def atomic_local_copy(source: Path, target: Path) -> None:
    """Copy a local file to target through a temporary name in target's folder, then rename."""
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(temporary_name(str(target)))
    try:
        shutil.copyfile(source, temp)
        shutil.copymode(source, temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def split_pid(stderr: str) -> tuple[str, int | None]:
    """Remove the remote-PID line from stderr and return (rest, pid)."""
    match = _PID_LINE.search(stderr)
    if match is None:
        return stderr, None
    return stderr[: match.start()] + stderr[match.end() :], int(match.group(1))


def kill_group_line(pid: int) -> str:
    """A shell line that kills a remote command and its children (its group if it leads one)."""
    # A PID that exists but leads no group cannot be some other group's id, so `-PID` is safe.
    return f"kill -9 -- -{pid} 2>/dev/null || kill -9 {pid} 2>/dev/null; true"


def decode(data: bytes) -> str:
    """Decode command output; undecodable bytes are replaced, never fatal."""
    return data.decode("utf-8", errors="replace")
