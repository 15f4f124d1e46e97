"""`profile_model` over adb: the real adb client and server against the adbd-protocol test server.

Both runner modes: the Python runner (the "phone" runs our venv's Python in its sandbox) and
TFLite's benchmark_model (the sandbox's program prints a verbatim recorded output of the tool).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fixtures.adb import adb_options_for
from toolkit.errors import DeviceSetupError
from toolkit.profile import ProfileRequest, profile_model
from toolkit.results import BenchmarkSettings, validate_result

pytestmark = pytest.mark.network

QUICK = BenchmarkSettings(warmup_runs=2, warmup_min_s=0.0, num_runs=30, min_s=0.0, max_s=20.0)


def _request(model, adbd, adb_server, **kwargs):
    options = adb_options_for(adb_server, adbd, **kwargs.pop("options", {}))
    kwargs.setdefault("settings", QUICK)
    return ProfileRequest(model, device=f"adb://{adbd.serial}", transport_options=options, **kwargs)


def test_python_runner_over_adb_end_to_end_and_cached(adbd, adb_server, tflite_cnn_fp32):
    from toolkit.transports import open_transport

    request = _request(tflite_cnn_fp32, adbd, adb_server, python=sys.executable)
    transport = open_transport(request.device, request.transport_options)
    uploads = []
    push = transport.push
    transport.push = lambda local, remote: (uploads.append(remote), push(local, remote))
    try:
        result = profile_model(request, transport)
        validate_result(result)
        assert result["device"]["transport"] == "adb"
        assert result["config"]["runner"] == "python"
        assert result["timings"]["count"] >= 30
        assert result["parity"]["cosine"] > 0.9999
        assert len(uploads) == 2
        profile_model(request, transport)
        assert len(uploads) == 2  # runner and model cached on the phone
        workdir = Path(adbd.device_path("/data/local/tmp/edgetk"))
        assert list((workdir / "runs").iterdir()) == []
    finally:
        transport.close()


def test_phone_without_python_is_a_setup_error_with_a_hint(adbd, adb_server, tflite_cnn_fp32):
    request = _request(tflite_cnn_fp32, adbd, adb_server, python="/system/bin/python3-not-here")
    with pytest.raises(DeviceSetupError) as excinfo:
        profile_model(request)
    assert "no Python" in excinfo.value.message
    assert "--python" in excinfo.value.hint


# --- the benchmark_model mode -------------------------------------------------------------------------

RECORDED = Path(__file__).parent / "data" / "benchmark_model"


def _calls(adbd, name: str = "benchmark_model") -> list[str]:
    path = Path(adbd.sandbox) / f"{name}.calls"
    return path.read_text().splitlines() if path.exists() else []


def test_benchmark_model_mode_pushes_the_binary_and_maps_its_output(adbd, adb_server, tflite_cnn_fp32):
    program = adbd.install_benchmark_model(RECORDED / "logcat_yolo26n_fp16_percentiles.txt")
    request = _request(tflite_cnn_fp32, adbd, adb_server, benchmark_model=str(program), threads=4)
    result = profile_model(request)
    validate_result(result)
    assert result["config"]["runner"] == "benchmark_model"
    assert result["config"]["delegate"] == "xnnpack"
    assert result["config"]["threads"] == 4
    timings = result["timings"]
    assert timings["init"] == pytest.approx(95.112)
    assert timings["first"] == pytest.approx(237.814)
    assert timings["warmup_mean"] == pytest.approx(238.954)
    assert timings["mean"] == pytest.approx(257.131)
    assert timings["p50"] == pytest.approx(252.767)
    assert (timings["p5"], timings["p95"]) == (pytest.approx(226.088), pytest.approx(303.407))
    assert (timings["min"], timings["max"]) == (pytest.approx(220.934), pytest.approx(326.273))
    assert timings["count"] == 25
    assert timings["samples"] == []
    assert result["delegation"] == {"delegated_nodes": 642, "total_nodes": 685, "partitions": 19, "cpu_ops": []}
    assert result["memory"]["source"] == "benchmark_model"
    assert result["memory"]["delta_bytes"] == round(90.25 * 1024 * 1024)
    assert result["selection"]["attempts"][0]["outcome"] == "partial"
    assert result["parity"] is None
    fingerprint = result["device"]["fingerprint"]
    assert fingerprint["runtime"]["name"] == "benchmark_model"
    assert fingerprint["serial"] == adbd.serial
    assert fingerprint["os"]
    # The pushed copy ran, with the model's device path and the settings as flags.
    (call,) = _calls(adbd)
    assert f"--graph={adbd.device_path('/data/local/tmp/edgetk')}/models/" in call
    for flag in ("--num_threads=4", "--use_xnnpack=true", "--num_runs=30", "--min_secs=0", "--warmup_runs=2"):
        assert flag in call.split()
    bins = list(Path(adbd.device_path("/data/local/tmp/edgetk/bin")).iterdir())
    assert len(bins) == 1
    assert bins[0].stat().st_mode & 0o111


def test_benchmark_model_run_is_timed_on_the_device(adbd, adb_server, tflite_cnn_fp32, tmp_path):
    """device_time_s: the tool's run timed around it on the phone (uptime), not the transport's round trips."""
    program = tmp_path / "benchmark_model"
    recorded = RECORDED / "tf24_yolov5s_fp32_cpu.txt"
    program.write_text(f"#!/bin/sh\nsleep 0.5\ncat {recorded}\n")
    program.chmod(0o755)
    result = profile_model(_request(tflite_cnn_fp32, adbd, adb_server, benchmark_model=str(program)))
    assert 0.5 - 0.01 <= result["device_time_s"] <= result["duration_s"]  # uptime ticks are 10 ms


def test_benchmark_model_time_falls_back_to_its_own_figures():
    from toolkit.profile import _parsed_time_s, _uptime_span

    assert _uptime_span("log\n@@edgetk-uptime 100.25 103.75\n") == pytest.approx(3.5)
    assert _uptime_span("@@edgetk-uptime  \n") is None  # /proc/uptime unreadable on this device
    timings = {"init": 20.0, "warmup_mean": 10.0, "warmup_runs": 3, "mean": 5.0, "count": 100}
    assert _parsed_time_s(timings) == pytest.approx((20 + 30 + 500) / 1000)
    assert _parsed_time_s({}) is None


def test_benchmark_model_mode_falls_back_when_a_delegate_fails_and_keeps_the_history(
    adbd, adb_server, tflite_cnn_fp32, tmp_path
):
    """A benchmark_model whose NNAPI run fails (verbatim NNAPI failure output) and whose CPU run works."""
    failed = RECORDED / "tf24_yolov5s_int8_nnapi_qti_default_failed.txt"
    works = RECORDED / "tf24_yolov5s_fp32_cpu.txt"
    program = tmp_path / "benchmark_model"
    program.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" --use_nnapi=true "*) cat ' + str(failed) + "; exit 1;; esac\n"
        "cat " + str(works) + "\n"
    )
    program.chmod(0o755)
    request = _request(
        tflite_cnn_fp32,
        adbd,
        adb_server,
        benchmark_model=str(program),
        delegates=("nnapi", "xnnpack"),
        delegate_options={"nnapi": {"accelerator_name": "qti-default"}},
    )
    result = profile_model(request)
    attempts = result["selection"]["attempts"]
    assert [(a["delegate"], a["outcome"]) for a in attempts] == [("nnapi", "failed_to_load"), ("xnnpack", "applied")]
    assert "ANEURALNETWORKS_OP_FAILED" in attempts[0]["details"]["errors"][0]
    assert result["config"]["delegate"] == "xnnpack"
    assert result["timings"]["mean"] == pytest.approx(249.684)
    assert result["memory"]["delta_bytes"] == round(138.809 * 1024 * 1024)


def test_benchmark_model_mode_reports_a_failure_of_every_delegate(adbd, adb_server, tflite_cnn_fp32):
    from toolkit.errors import DelegateError

    program = adbd.install_benchmark_model(RECORDED / "tf24_yolov5s_int8_nnapi_qti_dsp_failed.txt", exit_code=1)
    request = _request(tflite_cnn_fp32, adbd, adb_server, benchmark_model=str(program), delegates=("nnapi",))
    with pytest.raises(DelegateError) as excinfo:
        profile_model(request)
    assert "NNAPI" in excinfo.value.message or "nnapi" in excinfo.value.message
    assert excinfo.value.details["attempts"][0]["outcome"] == "failed_to_load"


def test_benchmark_model_already_on_the_phone_from_the_profile(adbd, adb_server, tflite_cnn_fp32, tmp_path):
    program = adbd.install_benchmark_model(RECORDED / "tf28_riscv_mobilenet_v1_op_profiling.txt")
    profile = tmp_path / "phone.yaml"
    profile.write_text(
        "name: test-phone\nos: android\nabi: arm64-v8a\n"
        "delegates: {gpu: {options: {precision: fp16}}}\npreferred_delegates: [gpu, xnnpack]\nthreads: [1, 4]\n"
        f"runner: {{mode: benchmark_model, benchmark_model: {program}}}\n"
    )
    request = _request(tflite_cnn_fp32, adbd, adb_server, profile=str(profile))
    result = profile_model(request)
    assert result["device"]["profile"] == "test-phone"
    assert result["config"]["delegate"] == "gpu"
    assert result["config"]["threads"] == 4
    timings = result["timings"]
    assert timings["mean"] == pytest.approx(2950.34)  # 2.95034e+06 us
    assert timings["warmup_runs"] == 1
    assert timings["count"] == 50
    (call,) = _calls(adbd)  # the profile's program on the phone ran (it records its arguments)
    assert "--use_gpu=true" in call.split()
    assert "--gpu_precision_loss_allowed=true" in call.split()
    assert not Path(adbd.device_path("/data/local/tmp/edgetk/bin")).exists() or not any(
        Path(adbd.device_path("/data/local/tmp/edgetk/bin")).iterdir()
    )
    # --runner python overrides the profile's mode (a phone with Termux's Python, say).
    python_run = profile_model(
        _request(tflite_cnn_fp32, adbd, adb_server, profile=str(profile), runner="python", python=sys.executable)
    )
    assert python_run["config"]["runner"] == "python"
    assert python_run["timings"]["samples"]


def test_benchmark_model_missing_on_the_phone_is_a_setup_error(adbd, adb_server, tflite_cnn_fp32, tmp_path):
    profile = tmp_path / "phone.yaml"
    profile.write_text(
        "name: test-phone\nos: android\nabi: arm64-v8a\n"
        "runner: {mode: benchmark_model, benchmark_model: /data/local/tmp/not-there/benchmark_model}\n"
    )
    with pytest.raises(DeviceSetupError, match="benchmark_model is not at"):
        profile_model(_request(tflite_cnn_fp32, adbd, adb_server, profile=str(profile)))


def test_phone_lost_mid_run_is_a_transient_device_lost_error(adbd, adb_server, tflite_cnn_fp32):
    """The adb connection drops while the runner measures (cable pulled): the run stops cleanly."""
    import threading
    import time

    from toolkit.errors import CommandTimeoutError, DeviceLostError

    runs = Path(adbd.device_path("/data/local/tmp/edgetk")) / "runs"
    long_run = BenchmarkSettings(warmup_min_s=0.0, min_s=60.0, max_s=60.0)
    request = _request(tflite_cnn_fp32, adbd, adb_server, python=sys.executable, settings=long_run)
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = profile_model(request)
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while not (runs.is_dir() and any(runs.glob("*/request.json"))):
        assert time.monotonic() < deadline, "the runner did not start"
        time.sleep(0.01)
    adbd.drop()
    worker.join(120)
    assert not worker.is_alive()
    assert isinstance(outcome.get("error"), (DeviceLostError, CommandTimeoutError)), outcome
    assert outcome["error"].transient
    deadline = time.monotonic() + 30
    while any(runs.iterdir()):  # the runner got SIGTERM with its session and cleaned up
        assert time.monotonic() < deadline, list(runs.iterdir())
        time.sleep(0.05)
