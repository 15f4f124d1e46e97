"""The `adb` transport: an Android device through the platform-tools `adb` client.

`adb://SERIAL` is a USB device as `adb devices` lists it; `adb://host:port` a device over TCP
(`adb connect`). A private adb server is chosen with `server_port` (`adb -P`, the same as
ANDROID_ADB_SERVER_PORT).

The adb client hides failures in three places, handled here:
- `adb connect` exits 0 even when it fails: its output is parsed.
- A device that vanishes mid-command (reboot, cable pulled) can make `adb shell` exit 0 with no
  output. Each command therefore ends by printing its exit status on stderr; a missing status
  means the device was lost, and it also gives exit codes on devices without shell protocol v2.
- After a TCP device restarts, the adb server shows it `offline` until it reconnects by itself
  (~10 s, or never after a few failed attempts); `disconnect` + `connect` brings it back at once.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import (
    AuthError,
    BadInputError,
    CommandTimeoutError,
    DeviceError,
    DeviceLostError,
    MissingDependencyError,
    RemoteCommandError,
    UnreachableError,
)
from toolkit.transports.base import (
    REPORT_PID,
    Command,
    CommandResult,
    Stdin,
    Transport,
    decode,
    kill_group_line,
    run_process,
    split_pid,
    tail,
    temporary_name,
)
from toolkit.transports.options import AdbOptions

EXIT_MARK = "edgetk-exit="
_EXIT_LINE = re.compile(rf"{re.escape(EXIT_MARK)}(\d+)\r?\n?\Z")
_TCP_SERIAL = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[^:\s]+):\d+$")

UNAUTHORIZED_HINT = (
    "unlock the phone and accept the 'Allow USB debugging?' prompt (tick 'Always allow'), "
    "then retry; if no prompt shows, revoke USB debugging authorizations and reconnect"
)


@dataclass(frozen=True)
class AdbFailure:
    """One way the adb client fails, recognized by its output."""

    pattern: re.Pattern[str]
    error: type[DeviceError]
    message: str  # formatted with {serial}
    hint: str | None = None


def _failure(pattern: str, error: type[DeviceError], message: str, hint: str | None = None) -> AdbFailure:
    return AdbFailure(re.compile(pattern, re.IGNORECASE), error, message, hint)


ADB_FAILURES: tuple[AdbFailure, ...] = (
    _failure(r"unauthorized|failed to authenticate", AuthError, "{serial}: adb is not authorized", UNAUTHORIZED_HINT),
    _failure(r"still authorizing", AuthError, "{serial}: adb authorization is pending", UNAUTHORIZED_HINT),
    _failure(
        r"device offline|\boffline\b",
        DeviceLostError,
        "{serial}: the device is offline",
        "the device rebooted or lost its connection: check the cable or network; `adb reconnect offline` may help",
    ),
    _failure(
        r"device '.*' not found|no devices/emulators found|device not found",
        UnreachableError,
        "{serial}: no such device on the adb server",
        "check `adb devices`; for a TCP device use adb://host:port (edgetk runs `adb connect` for it)",
    ),
    _failure(
        r"failed to connect|unable to connect|cannot connect to|Connection refused|No route to host|timed out",
        UnreachableError,
        "{serial}: cannot connect",
        "check the address and that `adb tcpip 5555` was run on the phone (or wireless debugging is on)",
    ),
    _failure(
        r"error: closed|protocol fault|connection reset|broken pipe|failed to read|read failed|EOF",
        DeviceLostError,
        "{serial}: the connection to the device was lost",
    ),
)


def classify(output: str, serial: str) -> DeviceError | None:
    """The error the adb client's output stands for, or None if it matches no known failure."""
    for failure in ADB_FAILURES:
        if failure.pattern.search(output):
            return failure.error(failure.message.format(serial=serial), failure.hint, output_tail=tail(output, 5))
    return None


def parse_connect_output(output: str, serial: str) -> DeviceError | None:
    """None if `adb connect` succeeded (it exits 0 either way), else the error it reported."""
    text = output.strip()
    if re.search(r"^(already )?connected to ", text, re.MULTILINE):
        return None
    return classify(text, serial) or UnreachableError(
        f"{serial}: adb connect failed: {tail(text, 1) or 'no output'}",
        "check the address and that the device listens for adb over TCP",
    )


class AdbTransport(Transport):
    """Run commands on an Android device with `adb shell`; files with `adb push`/`adb pull`."""

    kind = "adb"

    def __init__(self, uri: str, options: AdbOptions | None = None) -> None:
        options = options or AdbOptions()
        super().__init__(uri, options.workdir, options.python)
        self.options = options
        self.serial = options.serial or uri.removeprefix("adb://").strip("/")
        if not self.serial:
            raise BadInputError(f"{uri!r}: no device serial", "use adb://SERIAL or adb://host:port")
        self.tcp = bool(_TCP_SERIAL.match(self.serial))
        self._ready = False
        if shutil.which(options.adb_path) is None:
            raise MissingDependencyError(
                f"the adb client `{options.adb_path}` is not installed",
                "install Android platform-tools (Debian/Ubuntu: apt install adb), or set adb_path",
            )

    # --- argv ------------------------------------------------------------------------------

    def adb_argv(self, *args: str, device: bool = True) -> list[str]:
        """An adb command line: the configured client, server port and (by default) this serial."""
        argv = [self.options.adb_path]
        if self.options.server_port:
            argv += ["-P", str(self.options.server_port)]
        if device:
            argv += ["-s", self.serial]
        return [*argv, *args]

    def _adb(self, *args: str, timeout: float | None = None, device: bool = True, stdin: Stdin = None):
        return run_process(self.adb_argv(*args, device=device), timeout=timeout, stdin=stdin)

    # --- device state ----------------------------------------------------------------------

    def state(self) -> str:
        """The adb server's view of the device: device, offline, unauthorized, authorizing, missing..."""
        out = self._adb("get-state", timeout=self.options.connect_timeout_s + 10)
        text = (decode(out.stdout) + decode(out.stderr)).strip()
        if out.returncode == 0:
            return text.splitlines()[-1].strip() if text else "unknown"
        for state, pattern in _STATES:
            if re.search(pattern, text, re.IGNORECASE):
                return state
        return "unknown"

    def connect(self) -> None:
        """Make sure the device is usable (connecting TCP devices); raise the classified error if not."""
        if self._ready:
            return
        state = self.state()
        if state != "device" and self.tcp:
            state = self._connect_tcp(reconnect=state == "offline" and self.options.reconnect)
        if state != "device":
            raise self._state_error(state)
        self._ready = True

    def _connect_tcp(self, reconnect: bool) -> str:
        """`adb connect` (after `adb disconnect` for an offline device); wait for a settled state."""
        budget = self.options.connect_timeout_s
        if reconnect:
            self._adb("disconnect", self.serial, device=False, timeout=budget + 10)
        try:
            out = self._adb("connect", self.serial, device=False, timeout=budget + 10)
        except CommandTimeoutError:
            raise UnreachableError(f"{self.serial}: adb connect timed out", "check the address and network") from None
        error = parse_connect_output(decode(out.stdout) + decode(out.stderr), self.serial)
        if error is not None and not isinstance(error, AuthError):
            raise error
        deadline = time.monotonic() + budget
        state = self.state()
        while state in ("offline", "authorizing", "connecting") and time.monotonic() < deadline:
            time.sleep(0.2)  # the handshake finishes a moment after `connect` returns
            state = self.state()
        return state

    def _state_error(self, state: str) -> DeviceError:
        return classify(state if state != "missing" else f"device '{self.serial}' not found", self.serial) or (
            DeviceLostError(f"{self.serial}: the device is in state {state!r}", "check `adb devices`")
        )

    # --- commands --------------------------------------------------------------------------

    def _run(self, command: Command, timeout: float | None, stdin: Stdin) -> CommandResult:
        self.connect()
        # The exit status is printed by the device shell itself: see the module docstring.
        line = f"{REPORT_PID}; {command.shell_line()}; printf '{EXIT_MARK}%s\\n' \"$?\" >&2"
        try:
            out = run_process(
                self.adb_argv("shell", "-T", line),
                timeout=timeout,
                stdin=stdin,
                what=f"`{command.shell_line()[:120]}` on {self.serial}",
                on_timeout=lambda _out, err: self._kill_remote(decode(err)),
            )
        except CommandTimeoutError as error:
            error.details["argv"] = list(command.argv)
            error.details["stderr_tail"] = split_pid(error.details.get("stderr_tail", ""))[0]
            raise
        stderr, pid = split_pid(decode(out.stderr))
        match = _EXIT_LINE.search(stderr)
        if match is None:
            raise self._lost(stderr if pid is None else "", started=pid is not None)
        stderr = stderr[: match.start()]
        return CommandResult(command.argv, int(match.group(1)), decode(out.stdout), stderr, out.duration_s)

    def _lost(self, output: str, started: bool) -> DeviceError:
        """The error for a command whose exit status never arrived."""
        self._ready = False  # check the device state again before the next command
        error = classify(output, self.serial) if output else None
        if error is not None:
            return error
        what = "during the command" if started else "before the command started"
        return DeviceLostError(f"{self.serial}: the device went away {what}", output_tail=tail(output))

    def _kill_remote(self, stderr: str) -> None:
        _, pid = split_pid(stderr)
        if pid is None:
            return
        try:
            self._adb("shell", "-T", kill_group_line(pid), timeout=self.options.connect_timeout_s + 5)
        except DeviceError:
            pass  # a hung device: the command dies with it

    # --- files -----------------------------------------------------------------------------

    def push(self, local: str | os.PathLike[str], remote: str) -> None:
        """`adb push` to a temporary name in the target folder, then `mv` into place (atomic)."""
        source = Path(local)
        if not source.is_file():
            raise BadInputError(f"{source}: no such file to upload", "check the path")
        self.connect()
        temp = temporary_name(remote)
        try:
            self._transfer("push", str(source), temp, f"upload {source.name} to {remote}")
            self.run(["mv", "-f", temp, remote])
        except BaseException:
            self._forget_temporary(temp)
            raise

    def pull(self, remote: str, local: str | os.PathLike[str]) -> None:
        """`adb pull` into a temporary local name, then rename."""
        target = Path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(temporary_name(str(target)))
        self.connect()
        try:
            self._transfer("pull", remote, str(temp), f"download {remote}")
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    def _transfer(self, verb: str, source: str, target: str, what: str) -> None:
        out = self._adb(verb, source, target)
        if out.returncode == 0:
            return
        output = (decode(out.stderr) + decode(out.stdout)).strip()
        self._ready = False
        error = classify(output, self.serial) if not _is_file_problem(output) else None
        raise error or RemoteCommandError(
            f"{self.serial}: could not {what}: {tail(output, 1) or f'adb {verb} exited with {out.returncode}'}",
            "check the folder exists and is writable (/data/local/tmp is), and the free space",
            returncode=out.returncode,
            output_tail=tail(output),
        )

    def _forget_temporary(self, temp: str) -> None:
        try:
            self.run(["rm", "-f", temp], timeout=self.options.connect_timeout_s + 5, check=False)
        except DeviceError:
            pass

    # toybox's `rm`, `mkdir` and `mv` accept `--`, but older Android builds do not: avoid it there.
    def mkdir(self, remote: str) -> None:
        self.run(["mkdir", "-p", remote])

    def remove(self, remote: str) -> None:
        self.run(["rm", "-rf", remote])

    def sha256(self, remote: str) -> str | None:
        result = self.run(["sha256sum", remote], check=False)
        digest = result.stdout.split(maxsplit=1)[0] if result.returncode == 0 and result.stdout.strip() else ""
        return digest.lower() if len(digest) == 64 else None

    def size(self, remote: str) -> int | None:
        result = self.run(["stat", "-c", "%s", remote], check=False)
        text = result.stdout.strip()
        return int(text) if result.returncode == 0 and text.isdigit() else None


# `adb get-state` error text -> state name (it prints the state only when it is `device`).
_STATES: tuple[tuple[str, str], ...] = (
    ("unauthorized", r"unauthorized"),
    ("authorizing", r"authorizing"),
    ("offline", r"offline"),
    ("connecting", r"connecting"),
    ("missing", r"not found|no devices"),
)


def _is_file_problem(output: str) -> bool:
    """adb push/pull errors about the file itself (not the device)."""
    return bool(re.search(r"No such file|Permission denied|Read-only|No space|Is a directory|Not a directory", output))
