"""The adb transport end to end: the real adb client and server against the fake adbd on loopback."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from tests.servers.procs import free_port, process_state, time_out_after_start, wait_for
from toolkit.errors import (
    AuthError,
    CommandTimeoutError,
    DeviceError,
    DeviceLostError,
    ExitCode,
    RemoteCommandError,
    UnreachableError,
)
from toolkit.transports import open_transport
from toolkit.transports.adb import parse_connect_output
from toolkit.transports.base import is_temporary_name

pytestmark = pytest.mark.network


def test_run_returns_output_and_exit_codes(adb_transport):
    result = adb_transport.run(["sh", "-c", "echo out; echo err >&2"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\n", "err\n")
    assert adb_transport.run(["sh", "-c", "exit 3"], check=False).returncode == 3
    assert adb_transport.run(["sh", "-c", "exit 255"], check=False).returncode == 255
    with pytest.raises(RemoteCommandError) as info:
        adb_transport.run(["sh", "-c", "echo why >&2; exit 4"])
    assert info.value.details["returncode"] == 4
    assert "why" in info.value.message


def test_arguments_reach_the_device_unchanged(adb_transport):
    args = ["a b", "it's", '"q"', "$HOME", "`id`", "; rm -rf /", "*", ""]
    assert adb_transport.run(["printf", "%s|", *args]).stdout == "|".join(args) + "|"


def test_stdin_reaches_the_command(adb_transport):
    assert adb_transport.run(["cat"], stdin="through adb").stdout == "through adb"


def test_push_pull_with_spaces_and_quotes(adb_transport, tmp_path):
    data = os.urandom(200_000)
    source = tmp_path / "model.tflite"
    source.write_bytes(data)
    folder = f"{adb_transport.workdir}/with space/it's"
    adb_transport.mkdir(folder)
    remote = f"{folder}/m 'x'.tflite"
    adb_transport.push(source, remote)
    assert Path(remote).read_bytes() == data
    assert adb_transport.exists(remote)
    assert adb_transport.sha256(remote) == hashlib.sha256(data).hexdigest()
    assert adb_transport.size(remote) == len(data)
    assert [p for p in os.listdir(folder) if is_temporary_name(p)] == []
    back = tmp_path / "back" / "copy.tflite"
    adb_transport.pull(remote, back)
    assert back.read_bytes() == data
    adb_transport.remove(f"{adb_transport.workdir}/with space")
    assert not adb_transport.exists(remote)


def test_pull_of_a_missing_file_is_a_remote_error(adb_transport, tmp_path):
    with pytest.raises(RemoteCommandError):
        adb_transport.pull(f"{adb_transport.workdir}/missing", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_failed_adb_connect_is_unreachable(adb_server, adb_options, adbd):
    uri = f"adb://127.0.0.1:{free_port()}"
    with pytest.raises(UnreachableError, match=r"cannot connect|adb connect failed") as info:
        _connect_and_run(uri, adb_options(adbd))
    assert info.value.exit_code == ExitCode.UNREACHABLE


def test_unknown_usb_serial_is_unreachable(adb_options, adbd):
    with pytest.raises(UnreachableError, match="no such device"):
        _connect_and_run("adb://NOSUCHSERIAL123", adb_options(adbd))


def test_unauthorized_device_is_an_auth_error_with_a_hint(adbd_factory, adb_options):
    device = adbd_factory(unauthorized=True)
    with pytest.raises(AuthError) as info:
        _connect_and_run(f"adb://{device.serial}", adb_options(device))
    assert "USB debugging" in info.value.hint
    assert info.value.exit_code == ExitCode.AUTH


def test_restart_offline_then_reconnect(adbd, adb_transport, adb_server):
    assert adb_transport.run(["echo", "before"]).stdout == "before\n"
    adbd.restart()  # connections drop, the port refuses connections
    wait_for(lambda: "offline" in adb_server.run("devices").stdout, 30, "the server to see the device offline")
    with pytest.raises((DeviceLostError, UnreachableError)):
        adb_transport.run(["echo", "while down"])
    adbd.start()
    # The adb server alone would keep it offline for ~10 s; the transport reconnects at once.
    assert adb_transport.run(["echo", "after"]).stdout == "after\n"


def test_device_dropping_mid_command_is_device_lost_not_success(adbd, adb_transport, tmp_path):
    started = tmp_path / "started"

    def drop_when_started() -> None:
        wait_for(started.exists, 120, "the command to start")
        adbd.drop()

    dropper = threading.Thread(target=drop_when_started)
    dropper.start()
    try:
        # Without the exit-status check, adb reports this as exit 0 with no output.
        with pytest.raises(DeviceLostError):
            adb_transport.run(["sh", "-c", f"touch {started}; sleep 30; echo done"], timeout=60)
    finally:
        dropper.join()


def test_hung_device_times_out_and_recovers(adbd, adb_transport):
    adb_transport.run(["true"])
    adbd.hang()
    try:
        with pytest.raises(CommandTimeoutError) as info:
            adb_transport.run(["echo", "hung"], timeout=2)
        assert info.value.transient
    finally:
        adbd.unhang()
    assert adb_transport.run(["echo", "alive"]).stdout == "alive\n"


def test_timeout_kills_the_remote_command(adb_transport, tmp_path):
    pid_file = tmp_path / "pid"
    script = ["sh", "-c", f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file}; sleep 600"]
    time_out_after_start(lambda t: adb_transport.run(script, timeout=t), pid_file, CommandTimeoutError)
    pid = int(pid_file.read_text())
    wait_for(lambda: process_state(pid) in (None, "Z"), 30, "the remote command to be killed")


def test_device_dropping_mid_push_leaves_no_complete_looking_file(adbd, adb_transport, tmp_path):
    source = tmp_path / "big.tflite"
    block = os.urandom(1 << 20)
    with source.open("wb") as handle:
        for _ in range(128):
            handle.write(block)
    folder = Path(adb_transport.workdir)
    adb_transport.mkdir(str(folder))
    remote = folder / "big.tflite"

    def drop_when_partial() -> None:
        def partial() -> bool:
            return any(is_temporary_name(p.name) and _size(p) > 0 for p in folder.iterdir())

        wait_for(partial, 60, "the upload to start")
        adbd.restart()

    dropper = threading.Thread(target=drop_when_partial)
    dropper.start()
    try:
        with pytest.raises(DeviceError):
            adb_transport.push(source, str(remote))
    finally:
        dropper.join()
    assert not remote.exists()
    assert all(is_temporary_name(p.name) for p in folder.iterdir())


def test_benchmark_model_program_in_the_sandbox(adbd, adb_transport, tmp_path):
    recorded = tmp_path / "out.txt"
    recorded.write_text("STARTING!\nBenchmarking failed.\n")
    adbd.install_benchmark_model(recorded, exit_code=1)
    result = adb_transport.run(["benchmark_model", "--graph=/data/local/tmp/m.tflite", "--use_gpu=true"], check=False)
    assert result.returncode == 1
    assert result.stdout == recorded.read_text()
    assert (adbd.sandbox / "benchmark_model.calls").read_text() == "--graph=/data/local/tmp/m.tflite --use_gpu=true\n"


def _connect_and_run(uri: str, options: dict) -> None:
    with open_transport(uri, options) as transport:
        transport.run(["true"])


@pytest.mark.parametrize(
    ("output", "error"),
    [
        ("connected to 10.0.0.2:5555\n", None),
        ("already connected to 10.0.0.2:5555\n", None),
        ("failed to connect to '10.0.0.2:5555': Connection refused\n", UnreachableError),
        ("unable to connect to 10.0.0.2:5555: Connection timed out\n", UnreachableError),
        ("failed to authenticate to 10.0.0.2:5555\n", AuthError),
        ("", UnreachableError),
    ],
)
def test_adb_connect_output_is_parsed(output, error):
    result = parse_connect_output(output, "10.0.0.2:5555")
    assert (type(result) if result else None) is error


def _size(path: Path) -> int:
    """Size of a file that may be renamed away at any moment (0 once it is gone)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
