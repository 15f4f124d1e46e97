"""The ssh transport end to end: the real OpenSSH client against a private sshd on loopback."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from tests.servers.procs import process_state, time_out_after_start, wait_for
from tests.servers.sshd import SshKey
from toolkit.errors import (
    AuthError,
    CommandTimeoutError,
    DeviceError,
    DeviceLostError,
    ExitCode,
    HostKeyError,
    RemoteCommandError,
    UnreachableError,
)
from toolkit.transports import open_transport
from toolkit.transports.base import is_temporary_name, run_process

pytestmark = pytest.mark.network

WEIRD = 'dir with space/it\'s "quoted" $HOME; *.x'


def test_run_returns_output_and_exit_code(ssh_transport):
    result = ssh_transport.run(["sh", "-c", "echo out; echo err >&2; exit 0"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")
    failed = ssh_transport.run(["sh", "-c", "echo last words >&2; exit 3"], check=False)
    assert failed.returncode == 3
    assert failed.stderr == "last words\n"
    with pytest.raises(RemoteCommandError) as info:
        ssh_transport.run(["sh", "-c", "echo last words >&2; exit 3"])
    assert info.value.details["returncode"] == 3
    assert "last words" in info.value.message


def test_arguments_reach_the_device_unchanged(ssh_transport):
    args = ["a b", "it's", '"q"', "$HOME", "`id`", "; rm -rf /", "*", "new\nline", ""]
    result = ssh_transport.run(["printf", "%s|", *args])
    assert result.stdout == "|".join(args) + "|"


def test_stdin_and_binary_safe_output(ssh_transport):
    assert ssh_transport.run(["cat"], stdin="through ssh").stdout == "through ssh"
    assert ssh_transport.run(["sh", "-c", "exit 255"], check=False).returncode == 255  # the command's own 255
    assert ssh_transport.run(["no-such-program-edgetk"], check=False).returncode == 127


def test_connection_is_reused_and_closed(sshd, ssh_transport):
    for _ in range(5):
        ssh_transport.run(["true"])
    assert ssh_transport.master_running()
    assert sshd.log.read_text().count("Accepted publickey") == 1  # five commands, one login
    control_dir = os.path.dirname(ssh_transport.control_path)
    ssh_transport.close()
    assert not os.path.exists(control_dir)
    wait_for(lambda: sshd.session_pids() == [], 30, "the server-side session to end")


def test_expired_shared_connection_is_reopened_and_closed(sshd):
    transport = open_transport(sshd.uri, sshd.transport_options(control_persist_s=1))
    transport.run(["true"])
    wait_for(lambda: not transport.master_running(), 30, "the idle shared connection to expire")
    assert transport.run(["echo", "again"]).stdout == "again\n"  # a command opens it again
    transport.close()
    wait_for(lambda: sshd.session_pids() == [], 30, "the server-side sessions to end")
    assert sshd.log.read_text().count("Accepted publickey") == 2


def _hang_up_on_everyone(server: socket.socket) -> None:
    while True:
        try:
            server.accept()[0].close()
        except OSError:  # the test closed the socket
            return


def test_checking_a_master_that_is_going_away_never_logs_in(sshd):
    """`ssh -O check` meeting a socket whose master fails the hello must not become a master itself."""
    transport = open_transport(sshd.uri, sshd.transport_options())
    transport.run(["true"])
    master = int(re.search(rb"pid=(\d+)", run_process(transport.control_argv("check")).stderr).group(1))
    os.kill(master, signal.SIGKILL)
    wait_for(lambda: process_state(master) in (None, "Z"), 10, "the master to die")
    socket_path = Path(transport.control_path)
    socket_path.unlink()
    with socket.socket(socket.AF_UNIX) as dying:  # a master on its way out: accepts, then hangs up
        dying.bind(str(socket_path))
        dying.listen()
        threading.Thread(target=_hang_up_on_everyone, args=(dying,), daemon=True).start()
        assert not transport.master_running()
        transport.close()
    assert sshd.log.read_text().count("Accepted publickey") == 1


def test_proxyjump_from_the_users_ssh_config(sshd_factory, tmp_path):
    """A board behind a jump host, as the user's ssh_config says: commands, uploads and the shared
    connection's control commands all go through it."""
    jump, board = sshd_factory(host="127.0.0.2"), sshd_factory(host="127.0.0.3")
    config = tmp_path / "ssh_config"
    config.write_text(
        board.ssh_config.read_text().replace(
            f"Host {board.alias}\n", f"Host {board.alias}\n    ProxyJump {jump.alias}\n"
        )
        + jump.ssh_config.read_text()
    )
    (tmp_path / "model.tflite").write_bytes(b"model bytes")
    with open_transport(board.alias, {**board.alias_options(), "ssh_config": str(config)}) as transport:
        assert transport.run(["echo", "on the board"]).stdout == "on the board\n"
        transport.push(tmp_path / "model.tflite", f"{transport.workdir}/models/model.tflite")
        assert Path(board.root, "device", "models", "model.tflite").read_bytes() == b"model bytes"
        assert transport.master_running()
    wait_for(lambda: board.session_pids() == [] and jump.session_pids() == [], 30, "the sessions to end")
    assert board.log.read_text().count("Accepted publickey") == 1  # one shared connection did it all
    assert jump.log.read_text().count("Accepted publickey") == 1  # the way in went through the jump host


def test_without_multiplexing_each_command_logs_in(sshd):
    with open_transport(sshd.uri, sshd.transport_options(multiplex=False)) as transport:
        transport.run(["true"])
        transport.run(["true"])
    assert sshd.log.read_text().count("Accepted publickey") == 2


def test_ssh_config_alias(sshd):
    with open_transport(sshd.alias, sshd.alias_options()) as transport:
        assert transport.kind == "ssh"
        assert transport.run(["echo", "via alias"]).stdout == "via alias\n"


def test_push_pull_with_spaces_and_quotes(ssh_transport, tmp_path):
    data = os.urandom(300_000)
    source = tmp_path / "model.tflite"
    source.write_bytes(data)
    folder = f"{ssh_transport.workdir}/{WEIRD}"
    ssh_transport.mkdir(folder)
    remote = f"{folder}/m 'x'.tflite"
    ssh_transport.push(source, remote)
    assert Path(remote).read_bytes() == data  # the "device" is this machine
    assert ssh_transport.exists(remote)
    assert ssh_transport.sha256(remote) == hashlib.sha256(data).hexdigest()
    assert ssh_transport.size(remote) == len(data)
    assert [p for p in os.listdir(folder) if is_temporary_name(p)] == []
    back = tmp_path / "back" / "copy.tflite"
    ssh_transport.pull(remote, back)
    assert back.read_bytes() == data
    ssh_transport.remove(f"{ssh_transport.workdir}/dir with space")
    assert not ssh_transport.exists(remote)
    assert ssh_transport.sha256(remote) is None


def test_push_replaces_an_existing_file(ssh_transport, tmp_path):
    ssh_transport.mkdir(ssh_transport.workdir)
    remote = f"{ssh_transport.workdir}/f"
    for content in (b"old", b"new"):
        (tmp_path / "f").write_bytes(content)
        ssh_transport.push(tmp_path / "f", remote)
    assert Path(remote).read_bytes() == b"new"


def test_push_creates_the_folder_and_fails_cleanly_where_it_cannot(ssh_transport, tmp_path):
    data = bytes(range(256)) * 64  # every byte value: the stream is binary-safe
    (tmp_path / "f").write_bytes(data)
    ssh_transport.push(tmp_path / "f", f"{ssh_transport.workdir}/new folder/f")
    assert Path(ssh_transport.workdir, "new folder", "f").read_bytes() == data
    blocker = Path(ssh_transport.workdir, "a-file")
    blocker.write_text("not a folder")
    with pytest.raises(RemoteCommandError, match="could not upload f to") as info:
        ssh_transport.push(tmp_path / "f", f"{blocker}/f")
    assert info.value.exit_code == ExitCode.REMOTE_FAILED
    assert sorted(p.name for p in Path(ssh_transport.workdir).iterdir()) == ["a-file", "new folder"]


def test_relative_workdir_is_under_the_login_home(sshd):
    with open_transport(sshd.uri, sshd.transport_options(workdir=".cache/edgetk-test")) as transport:
        home = transport.run(["sh", "-c", "cd && pwd -P"]).stdout.strip()
        assert transport.workdir == f"{home}/.cache/edgetk-test"


def test_unknown_host_key_is_refused(sshd, tmp_path):
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyError, match="unknown") as info:
        _connect_and_run(sshd.uri, sshd.transport_options(known_hosts=str(empty)))
    assert info.value.exit_code == ExitCode.HOST_KEY
    assert empty.read_text() == ""


def test_unknown_host_key_is_accepted_when_the_device_says_so(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    options = sshd.transport_options(known_hosts=str(known), accept_new_host_key=True)
    with open_transport(sshd.uri, options) as transport:
        assert transport.run(["echo", "ok"]).stdout == "ok\n"
    assert sshd.host_key.public_line().split()[1] in known.read_text()


def test_changed_host_key_is_refused_even_with_accept_new(sshd):
    sshd.restart(new_host_key=True)
    for accept in (False, True):
        with pytest.raises(HostKeyError, match="CHANGED"):
            _connect_and_run(sshd.uri, sshd.transport_options(accept_new_host_key=accept))


def test_wrong_key_is_auth_refused(sshd, tmp_path):
    stranger = SshKey.generate(tmp_path / "stranger")
    with pytest.raises(AuthError) as info:
        _connect_and_run(sshd.uri, sshd.transport_options(identity_file=str(stranger.private)))
    assert info.value.exit_code == ExitCode.AUTH
    assert "authorized_keys" in info.value.hint


def test_closed_port_is_unreachable(sshd):
    from tests.servers.procs import free_port

    uri = f"ssh://{sshd.user}@127.0.0.1:{free_port()}"
    with pytest.raises(UnreachableError, match="refused") as info:
        _connect_and_run(uri, sshd.transport_options())
    assert info.value.transient


def test_unresolvable_host_is_unreachable(sshd):
    with pytest.raises(UnreachableError, match="resolve"):
        _connect_and_run("ssh://nobody@no-such-host.invalid", sshd.transport_options())


def test_hung_server_times_out_at_connect(sshd):
    sshd.pause()
    try:
        with pytest.raises(UnreachableError, match="timed out"):
            _connect_and_run(sshd.uri, sshd.transport_options(connect_timeout_s=1))
    finally:
        sshd.resume()


def test_server_hanging_mid_session_is_device_lost(sshd, ssh_transport):
    ssh_transport.run(["true"])
    sshd.pause()  # listener and open sessions: the device stops answering
    try:
        with pytest.raises(DeviceLostError) as info:
            ssh_transport.run(["true"], timeout=120)  # ServerAlive (1 s x 3) fires long before this
        assert info.value.transient
    finally:
        sshd.resume()


def test_server_killed_mid_command_is_device_lost(sshd, ssh_transport, tmp_path):
    pid_file = tmp_path / "pid"
    ssh_transport.run(["true"])

    def kill_when_started() -> None:
        wait_for(pid_file.exists, 120, "the remote command to start")
        sshd.kill()

    killer = threading.Thread(target=kill_when_started)
    killer.start()
    try:
        with pytest.raises(DeviceLostError):
            ssh_transport.run(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], timeout=120)
    finally:
        killer.join()
        _kill_pid_file(pid_file)


def test_command_timeout_kills_the_remote_command(ssh_transport, tmp_path):
    pid_file = tmp_path / "pid"
    script = ["sh", "-c", f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}; sleep 600 & wait"]
    error = time_out_after_start(lambda t: ssh_transport.run(script, timeout=t), pid_file, CommandTimeoutError)
    assert error.exit_code == ExitCode.TIMEOUT
    assert error.details["argv"][0] == "sh"
    remote_pid = int(pid_file.read_text())
    wait_for(lambda: process_state(remote_pid) in (None, "Z"), 30, "the remote command to be killed")
    assert ssh_transport.run(["echo", "still usable"]).stdout == "still usable\n"


def test_upload_script_renames_only_a_complete_copy(tmp_path):
    """What runs on the device: a stream cut short ends `cat` with a plain EOF, so the size decides."""
    from toolkit.transports.ssh import UPLOAD_SCRIPT

    folder = tmp_path / "new folder"

    def upload(data: bytes, size: int) -> subprocess.CompletedProcess:
        argv = ["sh", "-c", UPLOAD_SCRIPT, "sh", str(folder), str(folder / ".m.tmp"), str(folder / "m"), str(size)]
        return subprocess.run(argv, input=data, capture_output=True)

    cut = upload(b"half", 8)
    assert cut.returncode == 1
    assert cut.stderr == b"upload incomplete: 4 of 8 bytes arrived\n"
    assert sorted(p.name for p in folder.iterdir()) == [".m.tmp"]
    assert upload(b"complete", 8).returncode == 0
    assert (folder / "m").read_bytes() == b"complete"
    assert sorted(p.name for p in folder.iterdir()) == ["m"]


def test_server_killed_mid_upload_leaves_no_complete_looking_file(sshd, ssh_transport, tmp_path):
    source = tmp_path / "big.tflite"
    block = os.urandom(1 << 20)
    with source.open("wb") as handle:
        for _ in range(256):
            handle.write(block)  # 256 MiB: the copy takes long enough to interrupt
    folder = Path(ssh_transport.workdir) / "models"
    ssh_transport.mkdir(str(folder))
    remote = folder / "big.tflite"

    def kill_when_partial() -> None:
        def partial_upload() -> bool:
            return any(is_temporary_name(p.name) and _size(p) > 0 for p in folder.iterdir())

        wait_for(partial_upload, 60, "the upload to start")
        sshd.kill()

    killer = threading.Thread(target=kill_when_partial)
    killer.start()
    try:
        with pytest.raises(DeviceError) as info:
            ssh_transport.push(source, str(remote))
    finally:
        killer.join()
    assert info.value.transient  # device lost (or unreachable): the farm retries it
    assert not remote.exists()
    leftovers = list(folder.iterdir())
    assert all(is_temporary_name(p.name) for p in leftovers)
    assert all(p.stat().st_size < source.stat().st_size for p in leftovers)


def test_reconnects_after_the_server_restarts(sshd, ssh_transport):
    ssh_transport.run(["true"])
    sshd.kill()
    with pytest.raises((DeviceLostError, UnreachableError)):
        ssh_transport.run(["true"])
    sshd.start()
    assert ssh_transport.run(["echo", "back"]).stdout == "back\n"


def _connect_and_run(uri: str, options: dict) -> None:
    with open_transport(uri, options) as transport:
        transport.run(["true"])


def _kill_pid_file(pid_file: Path) -> None:
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), 9)
        except (ProcessLookupError, ValueError):
            pass


def test_several_servers_on_loopback_addresses(sshd_factory):
    servers = [sshd_factory(host=f"127.0.0.{2 + i}") for i in range(3)]
    for server in servers:
        with open_transport(server.uri, server.transport_options()) as transport:
            result = transport.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()
            assert result[2] == server.host  # the server side of the connection


def _size(path: Path) -> int:
    """Size of a file that may be renamed away at any moment (0 once it is gone)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
