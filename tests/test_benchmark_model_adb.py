"""The benchmark_model runner mode's plumbing: push, run and parse through the real adb client.

The fake adbd's sandbox provides a `benchmark_model` that replays a recorded output and exit code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.benchmark_model import benchmark_argv, parse_benchmark_output
from toolkit.errors import DelegateError

pytestmark = pytest.mark.network

DATA = Path(__file__).parent / "data" / "benchmark_model"


def test_recorded_run_through_adb(adbd, adb_transport, tmp_path):
    recorded = DATA / "logcat_yolo26n_fp16_percentiles.txt"
    program = adbd.install_benchmark_model(recorded, exit_code=0)
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3" + bytes(64))
    adb_transport.mkdir(adb_transport.workdir)
    remote_model = f"{adb_transport.workdir}/model.tflite"
    adb_transport.push(model, remote_model)

    argv = benchmark_argv(str(program), remote_model, delegate="xnnpack", threads=4, settings={"num_runs": 25})
    result = adb_transport.run(argv, timeout=60, check=False)
    parsed = parse_benchmark_output(result.stdout + result.stderr, result.returncode)

    assert parsed.ok
    assert parsed.timings["count"] == 25
    assert parsed.timings["p50"] == pytest.approx(252.767)
    assert parsed.delegation["delegated_nodes"] == 642
    calls = (adbd.sandbox / "benchmark_model.calls").read_text().split()
    assert calls == argv[1:]


def test_recorded_failure_through_adb(adbd, adb_transport):
    program = adbd.install_benchmark_model(DATA / "tf24_yolov5s_int8_nnapi_qti_dsp_failed.txt", exit_code=1)
    result = adb_transport.run([str(program), "--graph=/x.tflite", "--use_nnapi=true"], check=False)
    assert result.returncode == 1
    parsed = parse_benchmark_output(result.stdout + result.stderr, result.returncode)
    with pytest.raises(DelegateError, match="BAD_DATA"):
        raise parsed.failure.to_error()
