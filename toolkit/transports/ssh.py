"""The `ssh` transport: a Linux board through the system OpenSSH client.

Using the system client means the user's ssh_config, keys, agent and ProxyJump just work. Policy
on top of it: BatchMode (never prompt), host keys checked (`accept-new` only when the device
options say so), connect and server-alive timeouts, and one shared connection per device
(ControlMaster) so each command costs one round trip instead of a handshake.

Three things OpenSSH does not do for us:
- ssh always hands the command to the remote shell, so commands are quoted with shlex.quote.
- Killing the local ssh does not stop the remote command (no pty, so no SIGHUP; it survives even
  `ssh -O exit`). Each command therefore reports its remote shell's PID on stderr first (the
  session leader, so its PID is the process group of the shell and the command), and a timeout
  kills that group on the device: an orphaned benchmark would otherwise keep loading the CPU and
  skew the next measurement.
- A command killed by a signal makes ssh exit 255 with no message — the code of ssh's own
  failures. So the remote shell does not `exec` the command: it stays, and prints the command's
  exit status on stderr last (128+N for signal N, as shells do). A status line means the command
  finished and says how; without one, 255 is ssh's failure, or ssh or the shell itself was killed
  (the result is lost: DeviceLostError, never the command's own crash).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from toolkit.errors import (
    AuthError,
    BadInputError,
    CommandTimeoutError,
    ConfigError,
    DeviceError,
    DeviceLostError,
    HostKeyError,
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
from toolkit.transports.options import SshOptions

SSH_FAILED = 255  # ssh's own exit code for connection-level failures
EXIT_MARK = "edgetk-exit="
REPORT_EXIT = f's=$?; printf \'{EXIT_MARK}%s\\n\' "$s" >&2; exit "$s"'
_EXIT_LINE = re.compile(rf"{re.escape(EXIT_MARK)}(\d+)\r?\n?\Z")
# `sh -c UPLOAD_SCRIPT sh FOLDER TEMP FINAL SIZE` with the file on stdin. A connection that dies
# mid-copy ends `cat` with a plain EOF (exit 0) and the remote shell lives on, so the size decides
# whether TEMP becomes FINAL; an interrupted copy leaves only TEMP.
UPLOAD_SCRIPT = (
    'mkdir -p -- "$1" && cat > "$2" || exit 1; n=$(wc -c < "$2") || exit 1; '
    'if [ $((n)) -ne "$4" ]; then echo "upload incomplete: $((n)) of $4 bytes arrived" >&2; exit 1; fi; '
    'mv -f -- "$2" "$3"'
)


def split_exit(stderr: str) -> tuple[str, int | None]:
    """Remove the remote shell's exit-status line from the end of stderr: (rest, status or None)."""
    match = _EXIT_LINE.search(stderr)
    if match is None:
        return stderr, None
    return stderr[: match.start()], int(match.group(1))


@dataclass(frozen=True)
class SshTarget:
    """Where to connect: an ssh destination (host or Host alias) plus optional user and port."""

    destination: str
    user: str | None = None
    port: int | None = None

    def describe(self) -> str:
        who = f"{self.user}@" if self.user else ""
        where = f":{self.port}" if self.port else ""
        return f"{who}{self.destination}{where}"


def parse_target(uri: str, options: SshOptions) -> SshTarget:
    """Split `ssh://user@host:port`, `user@host` or a Host alias; options override the URI."""
    if uri.startswith("ssh://"):
        parts = urlsplit(uri)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ConfigError(f"{uri}: an ssh device URI has no path or query", "use ssh://user@host:port")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{uri}: invalid port", "use ssh://user@host:port") from None
        host = parts.hostname or ""
        user = unquote(parts.username) if parts.username else None
    else:
        user, _, host = uri.rpartition("@")
        user, port = user or None, None
    if not host or host.startswith("-") or any(c.isspace() for c in host):
        # A leading '-' would be read by ssh as an option: never pass it on.
        raise ConfigError(f"{uri!r}: invalid ssh host", "use ssh://user@host:port or an ssh_config Host alias")
    return SshTarget(host, options.user or user, options.port or port)


# --- classification of ssh's own failures ------------------------------------------------------


@dataclass(frozen=True)
class SshFailure:
    """One way ssh fails, recognized by its stderr: which error it becomes and what to say."""

    pattern: re.Pattern[str]
    error: type[DeviceError]
    message: str  # formatted with {target}
    hint: str | None = None  # None: the error class's default hint


def _failure(pattern: str, error: type[DeviceError], message: str, hint: str | None = None) -> SshFailure:
    return SshFailure(re.compile(pattern, re.IGNORECASE), error, message, hint)


# Order matters: the first match wins (a changed key also prints "Host key verification failed").
CONNECT_FAILURES: tuple[SshFailure, ...] = (
    _failure(
        r"REMOTE HOST IDENTIFICATION HAS CHANGED",
        HostKeyError,
        "{target}: the host key has CHANGED since it was stored in known_hosts",
        "if the device was reinstalled, remove the old key (ssh-keygen -R HOST) and verify the new one; "
        "otherwise someone may be intercepting the connection",
    ),
    _failure(
        r"No \S+ host key is known for|Host key verification failed",
        HostKeyError,
        "{target}: the host key is unknown (not in known_hosts)",
    ),
    _failure(r"Permission denied|Too many authentication failures", AuthError, "{target}: authentication refused"),
    _failure(
        r"Could not resolve hostname|Name or service not known|Temporary failure in name resolution",
        UnreachableError,
        "{target}: cannot resolve the host name",
        "check the host name, DNS or /etc/hosts, or use the device's IP address",
    ),
    _failure(r"Connection refused", UnreachableError, "{target}: connection refused (no ssh server on that port?)"),
    _failure(r"No route to host|Network is unreachable", UnreachableError, "{target}: no route to host"),
    _failure(
        r"timed out|Operation timed out",
        UnreachableError,
        "{target}: connection timed out",
        "the device did not answer in time: check it is powered, on the network, and not overloaded",
    ),
    _failure(
        r"Connection closed|Connection reset|kex_exchange_identification|Broken pipe",
        UnreachableError,
        "{target}: the server closed the connection during the handshake",
        "the ssh server is up but refused the session: check its logs (MaxStartups, AllowUsers)",
    ),
)

# Failures once a command runs on an established connection: the device went away.
SESSION_FAILURES: tuple[SshFailure, ...] = (
    _failure(r"Timeout, server .* not responding", DeviceLostError, "{target}: the device stopped responding"),
    _failure(
        r"Connection closed|Connection reset|Broken pipe|client_loop|mux_client|read from master failed"
        r"|lost connection",
        DeviceLostError,
        "{target}: the connection was lost during the command",
    ),
    *CONNECT_FAILURES,
)


def classify(stderr: str, target: str, failures: tuple[SshFailure, ...]) -> DeviceError | None:
    """The error an ssh failure stands for, or None if stderr matches no known failure."""
    for failure in failures:
        if failure.pattern.search(stderr):
            last = tail(stderr, 3)
            return failure.error(failure.message.format(target=target), failure.hint, stderr_tail=last)
    return None


# --- the transport ------------------------------------------------------------------------------


class SshTransport(Transport):
    """Run commands on a Linux device over one shared OpenSSH connection."""

    kind = "ssh"

    def __init__(self, uri: str, options: SshOptions | None = None) -> None:
        options = options or SshOptions()
        super().__init__(uri, options.workdir, options.python)
        self.options = options
        self.target = parse_target(uri, options)
        self._control_dir: str | None = None
        self._master_started = False
        self._resolved_workdir: str | None = None
        self._home: str | None = None
        for tool in (options.ssh_path, options.scp_path):
            if shutil.which(tool) is None:
                raise MissingDependencyError(
                    f"the OpenSSH client `{tool}` is not installed",
                    "install it: apt install openssh-client (Debian/Ubuntu), or set ssh_path/scp_path",
                )

    # --- argv building ---------------------------------------------------------------------

    def common_options(self) -> list[str]:
        """`-o` settings shared by ssh and scp: policy, timeouts, identity, multiplexing."""
        o = self.options
        settings = [
            "BatchMode=yes",
            f"StrictHostKeyChecking={'accept-new' if o.accept_new_host_key else 'yes'}",
            f"ConnectTimeout={o.connect_timeout_s}",
            f"ServerAliveInterval={o.server_alive_interval_s}",
            f"ServerAliveCountMax={o.server_alive_count_max}",
        ]
        if o.known_hosts:
            settings.append(f"UserKnownHostsFile={o.known_hosts}")
        if o.identity_file:
            # Only the given key: agent keys tried first can exhaust the server's MaxAuthTries.
            settings += [f"IdentityFile={o.identity_file}", "IdentitiesOnly=yes"]
        if self.target.user:
            settings.append(f"User={self.target.user}")
        if self.target.port:
            settings.append(f"Port={self.target.port}")
        if o.multiplex:
            settings += [f"ControlPath={self.control_path}", "ControlMaster=auto"]
            settings.append(f"ControlPersist={o.control_persist_s}")
        settings += o.ssh_options
        args = ["-F", o.ssh_config] if o.ssh_config else []
        for setting in settings:
            args += ["-o", setting]
        return args

    @property
    def control_path(self) -> str:
        """The master's socket: a short private folder (unix socket paths are limited to ~104 bytes)."""
        if self._control_dir is None:
            self._control_dir = tempfile.mkdtemp(prefix="etk-", dir="/tmp")
        return os.path.join(self._control_dir, "master.sock")  # one folder per transport, so one name

    def ssh_argv(self, *args: str, remote_line: str | None = None) -> list[str]:
        """A full ssh command line for this device: options, destination, then the remote line."""
        remote = [remote_line] if remote_line is not None else []
        return [self.options.ssh_path, *self.common_options(), *args, "--", self.target.destination, *remote]

    def control_argv(self, operation: str) -> list[str]:
        """`ssh -O check|exit` for the shared connection, which never logs in itself.

        When the socket's master is on its way out ("master hello exchange failed"), OpenSSH goes on
        to connect to the host as if no -O had been given: `-O check` would log in (and, with
        ControlMaster=auto, become a new master) just to say "running". A proxy command that fails
        stops that; the first value given for an option wins, so these go first. The control path
        is a fixed name (not %C, whose hash would change with the proxy in newer OpenSSH).
        """
        return [
            self.options.ssh_path,
            *("-o", "ControlMaster=no", "-o", "ProxyCommand=false"),
            *self.common_options(),
            *("-O", operation, "--", self.target.destination),
        ]

    def _scp_location(self, remote: str) -> str:
        host = self.target.destination
        host = f"[{host}]" if ":" in host else host  # IPv6 literal
        return f"{host}:{remote}"

    def scp_argv(self, source: str, target: str) -> list[str]:
        return [self.options.scp_path, "-q", "-B", *self.common_options(), "--", source, target]

    # --- connection ------------------------------------------------------------------------

    def connect(self) -> None:
        """Open the shared connection now (idempotent); raises the classified error if it fails."""
        if self._master_started or not self.options.multiplex:
            return
        log = Path(self.control_path).with_name("master.log")
        # -f backgrounds after authentication; its output goes to a file, not our pipes, because
        # the backgrounded master keeps them open for its whole life.
        argv = self.ssh_argv("-M", "-N", "-f", "-T")
        budget = self.options.connect_timeout_s * 3 + 10  # connect + banner + key exchange + auth
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=handle, start_new_session=True
            )
            try:
                code = proc.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = None
        output = log.read_text(errors="replace")
        if code == 0:
            self._master_started = True
            return
        if code is None:
            output += "\nconnection timed out"
        raise classify(output, self.target.describe(), CONNECT_FAILURES) or UnreachableError(
            f"{self.target.describe()}: ssh could not connect: {tail(output, 1) or 'no output'}",
            stderr_tail=tail(output),
        )

    def close(self) -> None:
        """Close the shared connection (`ssh -O exit`) and remove its socket folder."""
        if self._control_dir is not None:
            # Also when a command re-opened the connection itself (ControlMaster=auto).
            if any(name != "master.log" for name in os.listdir(self._control_dir)):
                try:
                    run_process(self.control_argv("exit"), timeout=10)
                except DeviceError:
                    pass
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = None
        self._master_started = False
        super().close()

    def master_running(self) -> bool:
        """True while the shared connection is up (`ssh -O check`)."""
        if not self._master_started:
            return False
        return run_process(self.control_argv("check"), timeout=10).returncode == 0

    # --- commands --------------------------------------------------------------------------

    def _run(self, command: Command, timeout: float | None, stdin: Stdin) -> CommandResult:
        self.connect()
        had_master = self._master_started
        line = f"{REPORT_PID}; {command.shell_line()}; {REPORT_EXIT}"
        try:
            out = run_process(
                self.ssh_argv("-T", "-x", remote_line=line),
                timeout=timeout,
                stdin=stdin,
                what=f"`{command.shell_line()[:120]}` on {self.target.describe()}",
                on_timeout=lambda _out, err: self._kill_remote(decode(err)),
            )
        except CommandTimeoutError as error:
            error.details["argv"] = list(command.argv)
            error.details["stderr_tail"] = split_pid(error.details.get("stderr_tail", ""))[0]
            raise
        stderr, pid = split_pid(decode(out.stderr))
        stderr, status = split_exit(stderr)
        if out.returncode < 0:
            raise self._client_killed(-out.returncode, stderr)
        if status is None and out.returncode == SSH_FAILED:
            self._raise_if_ssh_failed(stderr, started=pid is not None, had_master=had_master)
        returncode = out.returncode if status is None else status
        return CommandResult(command.argv, returncode, decode(out.stdout), stderr, out.duration_s)

    def _raise_if_ssh_failed(self, stderr: str, started: bool, had_master: bool) -> None:
        """Raise the classified error if exit 255 (without a status line) came from ssh.

        Without the PID line the command never ran, so ssh failed. With it, the remote shell was
        killed before it could report the command's status, or the connection died; it is the
        connection only if the shared connection died with it (or, without multiplexing, if ssh
        printed one of its connection errors).
        """
        where = self.target.describe()
        failures = SESSION_FAILURES if (started or had_master) else CONNECT_FAILURES
        if started:
            if self.options.multiplex and self.master_running():
                raise self._status_lost(stderr)  # the connection is fine: keep it
            error = classify(stderr, where, SESSION_FAILURES)
            if error is None and self.options.multiplex:
                error = DeviceLostError(
                    f"{where}: the connection was lost during the command", stderr_tail=tail(stderr)
                )
            error = error or self._status_lost(stderr)
        else:
            error = classify(stderr, where, failures) or DeviceLostError(
                f"{where}: ssh failed before the command started: {tail(stderr, 1) or 'no output'}",
                stderr_tail=tail(stderr),
            )
        if error is not None:
            self._master_started = False  # the shared connection is gone: reconnect next time
            raise error

    def _status_lost(self, stderr: str) -> DeviceLostError:
        """255 and no status line although the command started: ssh or the remote shell was killed.

        Never the command's own doing (its status, signals included, comes back as 128+N), so not
        a crash of what it ran: something outside (a stray kill, the OOM killer) took the session.
        """
        return DeviceLostError(
            f"{self.target.describe()}: the command's exit status never came back "
            "(the ssh client or the remote shell was killed)",
            "something outside edgetk killed the session (the OOM killer, a stray kill); run it again",
            stderr_tail=tail(stderr),
        )

    def _client_killed(self, number: int, stderr: str) -> DeviceLostError:
        """The local ssh process died of a signal: the command's fate on the device is unknown."""
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return DeviceLostError(
            f"{self.target.describe()}: the local ssh client was killed by {name} during the command",
            "something on this machine killed ssh (the OOM killer, a stray kill); run it again",
            stderr_tail=tail(stderr),
        )

    def _kill_remote(self, stderr: str) -> None:
        """Kill a timed-out command's process group on the device (best effort, short timeout)."""
        _, pid = split_pid(stderr)
        if pid is None:
            return
        kill = kill_group_line(pid)
        try:
            run_process(self.ssh_argv("-T", "-x", remote_line=kill), timeout=self.options.connect_timeout_s + 5)
        except DeviceError:
            pass  # the device is hung: the process dies with it or when it recovers

    # --- files -----------------------------------------------------------------------------

    def push(self, local: str | os.PathLike[str], remote: str) -> None:
        """Stream the file into a temporary name in the target folder, then `mv` it into place (atomic).

        One command over the shared connection (folder, copy and rename; only `sh`, `mkdir`, `cat`
        and `mv` on the device, so boards whose sshd has no SFTP server work too) instead of an scp
        plus an `mv`: with a login shell that takes a while to start, each round trip counts.
        """
        source = Path(local)
        if not source.is_file():
            raise BadInputError(f"{source}: no such file to upload", "check the path")
        remote = self.absolute(remote)
        temp = temporary_name(remote)
        try:
            with source.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                argv = ["sh", "-c", UPLOAD_SCRIPT, "sh", posixpath.dirname(remote), temp, remote, str(size)]
                result = self.run(argv, check=False, stdin=handle)
            if result.returncode != 0:
                raise RemoteCommandError(
                    f"{self.target.describe()}: could not upload {source.name} to {remote}: "
                    f"{tail(result.stderr, 1) or f'exit status {result.returncode}'}",
                    "check the remote folder is writable and that the disk is not full",
                    returncode=result.returncode,
                    stderr_tail=tail(result.stderr),
                )
        except BaseException:
            self._forget_temporary(temp)
            raise

    def pull(self, remote: str, local: str | os.PathLike[str]) -> None:
        """scp into a temporary local name, then rename (the local file is complete or absent)."""
        target = Path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(temporary_name(str(target)))
        self.connect()
        try:
            self._scp(self._scp_location(self.absolute(remote)), str(temp), f"download {remote}")
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    def _scp(self, source: str, target: str, what: str) -> None:
        out = run_process(self.scp_argv(source, target))
        if out.returncode == 0:
            return
        stderr = decode(out.stderr)
        error = classify(stderr, self.target.describe(), SESSION_FAILURES)
        if error is not None:
            self._master_started = False
            raise error
        raise RemoteCommandError(
            f"{self.target.describe()}: could not {what}: {tail(stderr, 1) or f'scp exited with {out.returncode}'}",
            "check the remote folder exists and is writable, and that the disk is not full",
            returncode=out.returncode,
            stderr_tail=tail(stderr),
        )

    def _forget_temporary(self, temp: str) -> None:
        """Remove a half-written upload if the device still answers; ignore failures."""
        try:
            self.run(["rm", "-f", "--", temp], timeout=self.options.connect_timeout_s + 5, check=False)
        except DeviceError:
            pass

    # --- paths -----------------------------------------------------------------------------

    @property
    def workdir(self) -> str:
        """The work folder as an absolute path (a relative one is under the login's home)."""
        if self._resolved_workdir is None:
            self._resolved_workdir = self.absolute(self._workdir)
        return self._resolved_workdir

    def absolute(self, remote: str) -> str:
        """Make a remote path absolute against the login's home folder (one round trip, cached)."""
        if posixpath.isabs(remote):
            return remote
        if self._home is None:
            self._home = self.run(["sh", "-c", "cd && pwd -P"], timeout=60).stdout.strip()
        return posixpath.normpath(posixpath.join(self._home, remote))
