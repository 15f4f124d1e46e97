"""The transport interface through the `local` transport, and URI/option parsing for every kind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.servers.procs import alive, time_out_after_start
from toolkit.errors import CommandTimeoutError, ConfigError, ExitCode, RemoteCommandError
from toolkit.transports import (
    AdbOptions,
    Command,
    LocalOptions,
    SshOptions,
    open_transport,
    options_for,
    transport_kind,
)
from toolkit.transports.base import is_temporary_name, temporary_name


@pytest.fixture
def local(tmp_path):
    with open_transport("local", {"workdir": str(tmp_path / "work")}) as transport:
        yield transport


def test_run_returns_output_exit_code_and_duration(local):
    result = local.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    assert result.returncode == 0
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.duration_s > 0
    assert result.argv[0] == sys.executable


def test_failing_command_raises_with_argv_exit_code_and_last_lines(local):
    code = "import sys\nfor i in range(30): print('line', i)\nprint('boom', file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(RemoteCommandError) as info:
        local.run([sys.executable, "-c", code])
    error = info.value
    assert error.exit_code == ExitCode.REMOTE_FAILED
    assert error.details["returncode"] == 3
    assert error.details["argv"][0] == sys.executable
    assert "boom" in error.message
    assert error.details["stdout_tail"].splitlines()[-1] == "line 29"
    assert "line 5" not in error.details["stdout_tail"]  # only the last lines


def test_check_false_returns_the_failure(local):
    result = local.run(["sh", "-c", "exit 7"], check=False)
    assert result.returncode == 7
    assert not result.ok


def test_missing_program_is_exit_127_like_a_shell(local):
    assert local.run(["no-such-program-edgetk"], check=False).returncode == 127


def test_stdin_is_passed(local):
    assert local.run(["cat"], stdin="hello").stdout == "hello"
    assert local.run(["wc", "-c"], stdin=b"\x00\x01\x02").stdout.strip() == "3"


def test_timeout_kills_the_command_and_its_children(local, tmp_path):
    marker = tmp_path / "child.pid"
    script = f"sleep 600 & echo $! > {marker}.tmp && mv {marker}.tmp {marker}; wait"
    error = time_out_after_start(lambda t: local.run(["sh", "-c", script], timeout=t), marker, CommandTimeoutError)
    assert error.transient
    child = int(marker.read_text())
    # The child was in the killed process group: it must be gone (reaped by init) or a zombie.
    assert not alive(child)


def test_argv_must_be_a_list_not_a_shell_line(local):
    with pytest.raises(TypeError):
        local.run("echo hi")
    with pytest.raises(ValueError):
        Command.of([])


def test_push_pull_exists_mkdir_remove(local, tmp_path):
    source = tmp_path / "model.tflite"
    source.write_bytes(os.urandom(4096))
    target_dir = f"{local.workdir}/models/with space 'quote'"
    local.mkdir(target_dir)
    remote = f"{target_dir}/m.tflite"
    local.push(source, remote)
    assert local.exists(remote)
    assert Path(remote).read_bytes() == source.read_bytes()
    assert local.size(remote) == 4096
    assert local.sha256(remote) == __import__("hashlib").sha256(source.read_bytes()).hexdigest()
    back = tmp_path / "back" / "m.tflite"
    local.pull(remote, back)
    assert back.read_bytes() == source.read_bytes()
    assert [p for p in os.listdir(target_dir) if is_temporary_name(p)] == []
    local.remove(f"{local.workdir}/models")
    assert not local.exists(remote)
    assert local.sha256(remote) is None
    local.remove(f"{local.workdir}/models")  # removing twice is fine


def test_push_of_a_missing_file_is_bad_input(local, tmp_path):
    from toolkit.errors import BadInputError

    with pytest.raises(BadInputError):
        local.push(tmp_path / "nope", f"{local.workdir}/x")


def test_temporary_name_is_in_the_same_folder():
    name = temporary_name("/data/local/tmp/edgetk/model.tflite")
    assert name.startswith("/data/local/tmp/edgetk/.model.tflite")
    assert is_temporary_name(name)
    assert not is_temporary_name("/data/local/tmp/edgetk/model.tflite")


def test_local_defaults(tmp_path):
    with open_transport("local") as transport:
        assert transport.kind == "local"
        assert transport.python == sys.executable
        assert transport.workdir.endswith(os.path.join("edgetk", "local"))


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("local", "local"),
        ("ssh://pi@10.0.0.5:2222", "ssh"),
        ("raspberrypi", "ssh"),
        ("pi@raspberrypi.local", "ssh"),
        ("adb://R58M12345AB", "adb"),
        ("adb://192.168.1.20:5555", "adb"),
    ],
)
def test_transport_kind(uri, kind):
    assert transport_kind(uri) == kind


@pytest.mark.parametrize("uri", ["ftp://x", "", "two words"])
def test_bad_uris_are_config_errors(uri):
    with pytest.raises(ConfigError):
        transport_kind(uri)


def test_options_from_dicts_are_validated_with_friendly_errors():
    assert isinstance(options_for("ssh://h", {"port": 2222}), SshOptions)
    assert isinstance(options_for("adb://S", None), AdbOptions)
    assert isinstance(options_for("local", LocalOptions()), LocalOptions)
    with pytest.raises(ConfigError, match=r"conect_timeout_s: unknown key \(did you mean 'connect_timeout_s'\?\)"):
        options_for("ssh://h", {"conect_timeout_s": 3})
    with pytest.raises(ConfigError, match="type"):
        options_for("ssh://h", {"type": "adb"})
    with pytest.raises(ConfigError):
        options_for("ssh://h", AdbOptions())


def test_options_union_discriminates_on_type():
    from pydantic import TypeAdapter

    from toolkit.transports import TransportOptions

    adapter = TypeAdapter(TransportOptions)
    assert isinstance(adapter.validate_python({"type": "adb", "serial": "X"}), AdbOptions)
    assert isinstance(adapter.validate_python({"type": "ssh", "user": "pi"}), SshOptions)
    with pytest.raises(Exception, match="serial"):
        adapter.validate_python({"type": "ssh", "serial": "X"})
