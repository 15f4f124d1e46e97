"""The profiler end to end on the real device given with --device (see conftest.py).

The same checks as tests/test_profile_{local,ssh,adb}.py, written for hardware: nothing here
assumes what the device is, only that it answers as its profile says.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from toolkit.errors import ToolkitError
from toolkit.profile import profile_model
from toolkit.results import BenchmarkSettings, validate_result


def _profile(device, model, **kwargs):
    try:
        return profile_model(device.request(model, **kwargs))
    except ToolkitError as error:
        pytest.fail(f"{type(error).__name__}: {error.message}\nhint: {error.hint}")


def test_profile_gives_a_complete_result(device, runner_mode, tflite_cnn_fp32):
    result = _profile(device, tflite_cnn_fp32)
    validate_result(result)
    timings = result["timings"]
    assert timings["count"] >= 1
    assert timings["p50"] > 0
    assert timings["mean"] > 0
    assert result["config"]["runner"] == runner_mode
    assert result["config"]["delegate"]
    fingerprint = result["device"]["fingerprint"]
    assert fingerprint["model"] or fingerprint["soc"], fingerprint
    assert fingerprint["os"], fingerprint
    if runner_mode == "python":
        assert timings["count"] == len(timings["samples"])
        assert timings["init"] > 0
        assert fingerprint["python"]
        assert fingerprint["runtime"]["version"]
        assert result["memory"]["peak_rss_bytes"] > 0
        assert result["parity"]["cosine"] > 0.999
        assert result["delegation"]["total_nodes"] > 0


def test_int8_model_runs_and_matches_the_cpu_reference(device, runner_mode, tflite_cnn_int8):
    result = _profile(device, tflite_cnn_int8)
    assert result["timings"]["p50"] > 0
    if runner_mode == "python":
        assert result["parity"]["cosine"] > 0.99


def test_runner_and_model_are_cached_on_the_device(device, runner_mode, tflite_cnn_fp32_nchw):
    if runner_mode != "python":
        pytest.skip("the benchmark_model mode has no runner to cache")  # not applicable: never a failure
    transport = device.open_transport()
    uploads = []
    push = transport.push
    transport.push = lambda local, remote: (uploads.append(remote), push(local, remote))
    try:
        profile_model(device.request(tflite_cnn_fp32_nchw), transport)
        before = len(uploads)
        profile_model(device.request(tflite_cnn_fp32_nchw), transport)
        assert len(uploads) == before, f"uploaded again: {uploads[before:]}"
    finally:
        transport.close()


def test_every_preferred_delegate_is_tried_and_reported(device, device_profile, runner_mode, tflite_cnn_fp32):
    if device_profile is None:
        pytest.skip("needs --profile to know the device's delegates")  # not applicable: never a failure
    if runner_mode != "python":
        pytest.skip("delegate selection reports come from the Python runner")  # not applicable: never a failure
    for name in device_profile.preferred_delegates:
        result = _profile(device, tflite_cnn_fp32, delegates=(name,))
        attempts = result["selection"]["attempts"]
        assert attempts, f"{name}: no attempt recorded"
        assert attempts[0]["delegate"].startswith(name) or name == "auto"
        assert result["selection"]["chosen"]


def test_thermal_zones_of_the_profile_are_read(device, device_profile, runner_mode, tflite_cnn_fp32):
    if device_profile is None or not device_profile.thermal_zones:
        pytest.skip("the profile names no thermal zones")  # not applicable: never a failure
    result = _profile(device, tflite_cnn_fp32)
    thermal = result["thermal"]
    if not thermal or not thermal["before_c"]:
        device.unavailable(f"none of the profile's zones {device_profile.thermal_zones} is readable")
    for celsius in thermal["before_c"].values():
        assert -20 < celsius < 120


def test_adaptive_mode_stops_by_itself(device, runner_mode, tflite_cnn_fp32):
    if runner_mode != "python":
        pytest.skip("adaptive mode needs the Python runner")  # not applicable: never a failure
    settings = BenchmarkSettings(warmup_min_s=0.2, adaptive=True, target_ci=0.02, max_s=30.0)
    timings = _profile(device, tflite_cnn_fp32, settings=settings)["timings"]
    assert timings["stop_reason"] in ("converged", "max_seconds")
    assert timings["ci95_rel"] is not None


def test_cli_prints_one_json_document(device, tflite_cnn_fp32, tmp_path):
    out = tmp_path / "result.json"
    argv = [sys.executable, "-m", "toolkit.cli", "profile", str(tflite_cnn_fp32), "--device", device.uri]
    argv += ["--runs", "20", "--min-secs", "0.5", "--json", "-o", str(out)]
    if device.profile:
        argv += ["--profile", device.profile]
    if device.python:
        argv += ["--python", device.python]
    if device.benchmark_model:
        argv += ["--benchmark-model", device.benchmark_model]
    for key, flag in (("ssh_config", "--ssh-config"), ("workdir", "--workdir")):
        if device.options.get(key):
            argv += [flag, device.options[key]]
    if device.options.get("accept_new_host_key"):
        argv.append("--accept-new-host-key")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(out.read_text())
