"""A private OpenSSH server for tests: real sshd, own host key, key-only auth, loopback only.

    key = SshKey.generate(tmp / "client")
    with SshServer(tmp / "srv", key, host="127.0.0.2") as server:
        uri, options = server.uri, server.transport_options()
        server.pause(); server.resume()      # SIGSTOP/SIGCONT the listener and its sessions
        server.kill()                        # SIGKILL: every connection drops
        server.restart(new_host_key=True)    # same address, a different host key
        server.stop()                        # by PID (through pidfds: PIDs get reused)

`own_home=True` gives the login a HOME of its own (as a separate board has), so ssh commands do
not run this machine's ~/.bashrc: the farm benchmark and load test use it.

Each server writes a `known_hosts` with its key and an `ssh_config` with a Host alias
(HostName/Port/User/IdentityFile/UserKnownHostsFile) for `ssh -F`. Tests never depend on the
user's ~/.ssh: OpenSSH reads ~/.ssh/config from the passwd home, not $HOME, so `-F` is the only
reliable way to isolate the client. Faults for the farm tests: pause, kill, restart with a
changed key, and (with tests/servers/netns.py) dropped packets.
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.servers.procs import children_of, descendants, free_port, send_all, signal_tree, stop_process, wait_for

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
START_TIMEOUT_S = 10.0


def sshd_available() -> bool:
    """True if Debian's openssh-server and the client are installed."""
    import shutil

    return os.access(SSHD, os.X_OK) and shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None


@dataclass(frozen=True)
class SshKey:
    """An ed25519 key pair on disk (no passphrase)."""

    private: Path

    @property
    def public(self) -> Path:
        return self.private.with_name(self.private.name + ".pub")

    def public_line(self) -> str:
        return self.public.read_text().strip()

    @classmethod
    def generate(cls, path: Path, comment: str = "edgetk-test") -> SshKey:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".pub").unlink(missing_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        return cls(path)


class SshServer:
    """One private sshd on host:port, started and stopped by PID."""

    def __init__(
        self,
        root: Path,
        client_key: SshKey,
        host: str = "127.0.0.1",
        port: int | None = None,
        alias: str | None = None,
        exec_prefix: list[str] | None = None,
        own_home: bool = False,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.client_key = client_key
        self.host = host
        self.port = port
        self.alias = alias or f"edgetk-test-{host.replace('.', '-')}"
        self.user = getpass.getuser()
        # e.g. ["ip", "netns", "exec", NAME] to run sshd inside a network namespace (it execs, same PID)
        self.exec_prefix = list(exec_prefix or [])
        # A HOME of its own, like a separate board: the login shell then skips this machine's
        # ~/.bashrc (root's here runs `pyenv init`: ~150 ms and hundreds of processes per command,
        # all devices queueing on one pyenv lock). Off by default: tests that run the remote
        # `python3` rely on that PATH.
        self.own_home = own_home
        self.proc: subprocess.Popen | None = None
        self._client_files_written = False
        self.host_key = SshKey.generate(self.root / "host_ed25519", comment="edgetk-test-host")

    # --- files the client uses ----------------------------------------------------------------

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def home(self) -> Path | None:
        """The login's HOME on this server when it has its own (own_home=True), else None."""
        return self.root / "home" if self.own_home else None

    @property
    def log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def uri(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    def transport_options(self, **overrides: object) -> dict:
        """SshOptions for this server: its key, its known_hosts, no user ssh_config; fast timeouts."""
        options = {
            "type": "ssh",
            "identity_file": str(self.client_key.private),
            "known_hosts": str(self.known_hosts),
            "ssh_config": os.devnull,
            "connect_timeout_s": 5,
            "server_alive_interval_s": 1,
            "server_alive_count_max": 3,
            "workdir": str(self.root / "device"),
        }
        options.update(overrides)
        return options

    def alias_options(self, **overrides: object) -> dict:
        """SshOptions to reach this server by its Host alias through the generated ssh_config."""
        options = {"type": "ssh", "ssh_config": str(self.ssh_config), "workdir": str(self.root / "device")}
        options.update(overrides)
        return options

    def host_key_line(self) -> str:
        """This server's known_hosts line (ssh writes `[host]:port` for ports other than 22)."""
        kind, blob = self.host_key.public_line().split()[:2]
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{name} {kind} {blob}"

    # --- lifetime -----------------------------------------------------------------------------

    def start(self) -> SshServer:
        """Write the config, start sshd in the foreground and wait until it listens."""
        if self.port is None:
            # Inside a network namespace the port space is private: the standard port is free.
            self.port = 22 if self.exec_prefix else free_port(self.host)
        self._write_server_files()
        if not self._client_files_written:
            # Only on the first start: after restart(new_host_key=True) the client must still
            # hold the old key, as a real user's known_hosts would.
            self.trust_current_host_key()
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation folder
        self.log.write_text("")
        log = self.log.open("ab")
        argv = [*self.exec_prefix, SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        try:
            wait_for(self._listening, START_TIMEOUT_S, f"sshd on {self.host}:{self.port}")
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"sshd did not start: {self.log.read_text()[-2000:]}") from None
        return self

    def _listening(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        return "Server listening on" in self.log.read_text()

    def stop(self) -> None:
        """Stop sshd and every session it forked (through process handles: PIDs get reused)."""
        if self.proc is not None:
            sessions = descendants(self.proc.pid)
            stop_process(self.proc)
            send_all(sessions, signal.SIGKILL)  # sessions outlive the listener's SIGTERM; do not leak them
            self.proc = None

    def kill(self) -> None:
        """SIGKILL the listener and its sessions: every connection drops at once (a crash)."""
        if self.proc is not None:
            signal_tree(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def pause(self, sessions: bool = True) -> None:
        """SIGSTOP the listener (new connections hang) and, by default, open sessions (a hung device)."""
        self._require_running()
        if sessions:
            signal_tree(self.proc.pid, signal.SIGSTOP)
        else:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT everything pause() stopped."""
        self._require_running()
        signal_tree(self.proc.pid, signal.SIGCONT)

    def session_pids(self) -> list[int]:
        """PIDs of the per-connection processes (children of the listener)."""
        return children_of(self.proc.pid) if self.proc is not None else []

    def restart(self, new_host_key: bool = False) -> SshServer:
        """Stop and start on the same address; optionally with a fresh host key (a reinstalled device)."""
        self.stop()
        if new_host_key:
            self.host_key = SshKey.generate(self.root / "host_ed25519", comment="edgetk-test-host")
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _require_running(self) -> None:
        if not self.running:
            raise RuntimeError(f"sshd on {self.host}:{self.port} is not running")

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- config files -------------------------------------------------------------------------

    def _write_server_files(self) -> None:
        authorized = self.root / "authorized_keys"
        authorized.write_text(self.client_key.public_line() + "\n")
        self.host_key.private.chmod(0o600)
        lines = [
            f"ListenAddress {self.host}:{self.port}",
            f"HostKey {self.host_key.private}",
            f"AuthorizedKeysFile {authorized}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {self.user}",
            "PidFile none",
            f"Subsystem sftp {SFTP_SERVER}",
            "MaxSessions 64",
            "MaxStartups 100:30:200",
            "LogLevel VERBOSE",
            "PrintMotd no",
        ]
        if self.home is not None:
            self.home.mkdir(exist_ok=True)
            lines.append(f"SetEnv HOME={self.home}")  # bash reads $HOME/.bashrc for ssh commands
        (self.root / "sshd_config").write_text("\n".join(lines) + "\n")

    def trust_current_host_key(self) -> None:
        """(Re)write the client's known_hosts and ssh_config for the current host key and port."""
        self.known_hosts.write_text(self.host_key_line() + "\n")
        self._client_files_written = True
        config = [
            f"Host {self.alias}",
            f"    HostName {self.host}",
            f"    Port {self.port}",
            f"    User {self.user}",
            f"    IdentityFile {self.client_key.private}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {self.known_hosts}",
            "    StrictHostKeyChecking yes",
            "    ConnectTimeout 5",
            "    ServerAliveInterval 1",
            "    ServerAliveCountMax 3",
        ]
        self.ssh_config.write_text("\n".join(config) + "\n")
