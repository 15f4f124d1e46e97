"""`profile_model` over ssh: a private sshd on loopback, the real ssh/scp client, the real runner.

The "device" is this machine seen through sshd; its Python is our venv's interpreter (transport
option `python`), its work folder a folder of the test.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.ssh import needs_sshd
from tests.servers.procs import handles, send_all, wait_for
from toolkit.errors import (
    CommandTimeoutError,
    DeviceError,
    DeviceLostError,
    DeviceSetupError,
    HostKeyError,
    RunnerCrashedError,
)
from toolkit.profile import ProfileRequest, profile_model
from toolkit.results import BenchmarkSettings, validate_result

pytestmark = [needs_sshd, pytest.mark.network]

QUICK = BenchmarkSettings(warmup_runs=2, warmup_min_s=0.0, num_runs=30, min_s=0.0, max_s=20.0)


def _options(server, **overrides):
    return server.transport_options(python=sys.executable, **overrides)


def _open(server, **overrides):
    from toolkit.transports import open_transport

    transport = open_transport(server.uri, _options(server, **overrides))
    transport.uploads = []
    push = transport.push

    def recording_push(local_path, remote):
        transport.uploads.append(remote)
        push(local_path, remote)

    transport.push = recording_push
    return transport


def _profile(model, server, transport=None, **kwargs):
    kwargs.setdefault("settings", QUICK)
    request = ProfileRequest(model, device=server.uri, transport_options=_options(server), **kwargs)
    return profile_model(request, transport)


def _runner_pids(marker: str) -> list[int]:
    """PIDs of processes whose command line mentions `marker` (a path unique to this test)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill_leftovers(marker: str) -> None:
    send_all(handles(_runner_pids(marker)), signal.SIGKILL)


def test_profile_over_ssh_end_to_end_and_cached_on_the_second_run(sshd, tflite_cnn_fp32):
    transport = _open(sshd)
    try:
        result = _profile(tflite_cnn_fp32, sshd, transport)
        validate_result(result)
        assert result["device"]["transport"] == "ssh"
        assert result["device"]["uri"] == sshd.uri
        assert result["timings"]["count"] >= 30
        assert result["parity"]["cosine"] > 0.9999
        assert result["device"]["fingerprint"]["runtime"]["name"] == "ai_edge_litert"
        first = list(transport.uploads)
        assert len(first) == 2
        _profile(tflite_cnn_fp32, sshd, transport)
        assert transport.uploads == first  # runner and model were cached by hash
        device = Path(transport.workdir)
        assert list((device / "runs").iterdir()) == []
        assert sorted(p.name for p in (device / "runner").iterdir()) == [posixpath.basename(first[0])]
    finally:
        transport.close()


def test_profile_opens_and_closes_its_own_connection(sshd, tflite_cnn_int8):
    result = _profile(tflite_cnn_int8, sshd)
    assert result["delegation"]["total_nodes"] > 0
    assert result["device"]["name"] == sshd.uri


def test_workdir_with_spaces_and_quotes(sshd, tflite_cnn_fp32):
    workdir = str(sshd.root / 'dev ice\'s "edgetk" $HOME')
    transport = _open(sshd, workdir=workdir)
    try:
        result = _profile(tflite_cnn_fp32, sshd, transport)
        assert result["timings"]["count"] >= 30
        assert Path(workdir, "runs").is_dir()
        assert any(Path(workdir, "models").iterdir())
    finally:
        transport.close()


def test_changed_host_key_is_refused(sshd, tflite_cnn_fp32):
    sshd.restart(new_host_key=True)
    with pytest.raises(HostKeyError):
        _profile(tflite_cnn_fp32, sshd)


def test_device_without_a_tflite_runtime_over_ssh(sshd, tflite_cnn_fp32, tmp_path):
    venv = tmp_path / "bare"
    import subprocess

    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    with pytest.raises(DeviceSetupError) as excinfo:
        _profile(tflite_cnn_fp32, sshd, python=str(venv / "bin" / "python"))
    assert "pip install" in excinfo.value.hint


def test_a_segfaulting_runner_over_ssh_is_reported_with_its_signal(sshd, tflite_cnn_fp32, tmp_path):
    from tests.test_profile_local import SEGFAULT_IN_MEASURE, _wrapper

    python = _wrapper(tmp_path, "crashing", SEGFAULT_IN_MEASURE)
    with pytest.raises(RunnerCrashedError) as excinfo:
        _profile(tflite_cnn_fp32, sshd, python=python)
    assert excinfo.value.details["signal_name"] == "SIGSEGV"


@pytest.mark.slow
def test_device_hung_mid_run_is_lost_and_the_runner_stops_itself(sshd, tflite_cnn_fp32):
    """SIGSTOP the server and its sessions while the runner measures: ServerAlive gives up."""
    workdir = sshd.root / "device"
    long_run = BenchmarkSettings(warmup_min_s=0.0, min_s=60.0, max_s=60.0)
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = _profile(tflite_cnn_fp32, sshd, settings=long_run)
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_for(lambda: any((workdir / "runs").glob("*/request.json")), 60, "the runner to start")
        time.sleep(1.0)
        sshd.pause()
        worker.join(60)
        assert not worker.is_alive()
        assert isinstance(outcome.get("error"), (DeviceLostError, CommandTimeoutError)), outcome
        assert outcome["error"].transient
    finally:
        sshd.resume()
        worker.join(30)
    try:
        sshd.stop()  # the sessions go: the runner stops itself, or was killed by the timeout
        wait_for(lambda: not _runner_pids(str(workdir)), 30, "the orphaned runner to stop")
    finally:
        _kill_leftovers(str(workdir))
    sshd.start()
    _profile(tflite_cnn_fp32, sshd)  # the next run clears whatever the lost one left behind
    assert list((workdir / "runs").iterdir()) == []


@pytest.mark.slow
def test_server_killed_mid_upload_leaves_no_complete_looking_model(sshd, tflite_cnn_fp32, tmp_path):
    big = tmp_path / "big.tflite"
    shutil.copyfile(tflite_cnn_fp32, big)
    with big.open("ab") as handle:  # trailing bytes after the flatbuffer: still a valid model, slow to copy
        handle.truncate(big.stat().st_size + 200 * 1024 * 1024)
    models = sshd.root / "device" / "models"
    killed = threading.Event()

    def kill_during_upload():
        def uploading():
            return any(".edgetk-tmp-" in p.name for p in models.glob("*/*")) if models.is_dir() else False

        try:
            wait_for(uploading, 120, "the model upload to start")
        except AssertionError:
            return
        sshd.kill()
        killed.set()

    killer = threading.Thread(target=kill_during_upload)
    killer.start()
    with pytest.raises(DeviceError):
        _profile(big, sshd)
    killer.join()
    assert killed.is_set()
    finals = [p for p in models.glob("*/*") if ".edgetk-tmp-" not in p.name]
    assert finals == []
    sshd.start()
    transport = _open(sshd)
    try:
        result = _profile(big, sshd, transport)
        assert result["model"]["size_bytes"] == big.stat().st_size
        assert any(p.endswith("big.tflite") for p in transport.uploads)  # uploaded again, in full
        finals = [p for p in models.glob("*/*") if ".edgetk-tmp-" not in p.name]
        assert [p.stat().st_size for p in finals] == [big.stat().st_size]
    finally:
        transport.close()


# --- the command, through an ssh_config alias ----------------------------------------------------------


def _alias_config(server, tmp_path, known_hosts: Path) -> Path:
    """An ssh_config like a user's: the alias, its key, and a known_hosts file of our choosing."""
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host edgetk-pi\n    HostName {server.host}\n    Port {server.port}\n    User {server.user}\n"
        f"    IdentityFile {server.client_key.private}\n    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
    )
    return config


def _cli_profile(model, config: Path, workdir: Path, *extra: str):
    from click.testing import CliRunner

    from toolkit.cli import main

    args = ["profile", str(model), "--device", "edgetk-pi", "--ssh-config", str(config)]
    args += ["--python", sys.executable, "--workdir", str(workdir), "--runs", "20", "--min-secs", "0"]
    args += ["--warmup-secs", "0", "--json", *extra]
    return CliRunner().invoke(main, args)


def test_cli_over_an_ssh_alias_with_a_known_host(sshd, tflite_cnn_fp32, tmp_path):
    import json

    config = _alias_config(sshd, tmp_path, sshd.known_hosts)
    result = _cli_profile(tflite_cnn_fp32, config, tmp_path / "dev")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["device"]["uri"] == "edgetk-pi"
    assert document["device"]["transport"] == "ssh"
    assert document["timings"]["count"] >= 20


def test_cli_refuses_an_unknown_host_key_unless_told_to_accept_it(sshd, tflite_cnn_fp32, tmp_path):
    from toolkit.errors import ExitCode

    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    config = _alias_config(sshd, tmp_path, known_hosts)
    refused = _cli_profile(tflite_cnn_fp32, config, tmp_path / "dev")
    assert refused.exit_code == ExitCode.HOST_KEY, refused.output
    assert "hint:" in refused.output
    accepted = _cli_profile(tflite_cnn_fp32, config, tmp_path / "dev", "--accept-new-host-key")
    assert accepted.exit_code == 0, accepted.output
    assert known_hosts.read_text().strip()  # the key is now stored: next time it is checked
