"""benchmark_model: command lines, and parsing of real recorded outputs (tests/data/benchmark_model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.benchmark_model import benchmark_argv, clean_line, parse_benchmark_output
from toolkit.errors import BadInputError, ConfigError, DelegateError, RunnerCrashedError
from toolkit.results import BenchmarkSettings, Delegation, Memory, Timings

DATA = Path(__file__).parent / "data" / "benchmark_model"
MB = 1024 * 1024


def parse_file(name: str, exit_code: int = 0):
    return parse_benchmark_output((DATA / name).read_text(), exit_code)


# Expected values are the numbers printed in each recorded file (µs / 1000 = ms, MB * 2**20 = bytes).
SUCCESSES = {
    "tf24_yolov5s_fp32_cpu.txt": {
        "timings": {"init": 16.242, "first": 360.262, "warmup_mean": 304.586, "mean": 249.684, "count": 50},
        "min_max_std": (247.067, 254.474, 1.442),
        "memory": {"delta_bytes": round(138.809 * MB)},
        "delegation": {},
    },
    "tf24_yolov5s_fp32_nnapi_gpu_fp16.txt": {
        "timings": {"init": 365.972, "first": 120.877, "warmup_mean": 108.605, "mean": 92.5712, "count": 50},
        "min_max_std": (89.745, 96.719, 1.638),
        "memory": {"delta_bytes": round(61.0547 * MB)},
        "delegation": {},
    },
    "tf28_riscv_mobilenet_v1_op_profiling.txt": {
        # scientific notation: Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06
        "timings": {"init": 17.187, "first": 3512.391, "warmup_mean": 3512.39, "mean": 2950.34, "count": 50},
        "min_max_std": (2727.568, 3189.954, 109.798),
        "warmup_runs": 1,  # the old `count=1 curr=3512391` warmup line
        "memory": {"delta_bytes": round(46.0859 * MB)},
        "delegation": {},
    },
    "logcat_yolo26n_fp16_percentiles.txt": {
        "timings": {"init": 95.112, "first": 237.814, "warmup_mean": 238.954, "mean": 257.131, "count": 25},
        "min_max_std": (220.934, 326.273, 27.081),
        "warmup_runs": 3,
        "p50": 252.767,
        "percentiles": {"p5": 226.088, "p50": 252.767, "p95": 303.407},
        "memory": {"delta_bytes": round(90.25 * MB)},
        "delegation": {"delegated_nodes": 642, "total_nodes": 685, "partitions": 19},
    },
    "cros_cpu_xnnpack_selected_lines.txt": {
        "timings": {"init": 3.337, "first": 81.913, "warmup_mean": 58.9847, "mean": 56.2658, "count": 1061},
        "min_max_std": (54.669, 60.236, 0.982),
        "warmup_runs": 9,
        "memory": {"peak_rss_bytes": round(93.2383 * MB)},
        "delegation": {"delegated_nodes": 58, "total_nodes": 58, "partitions": 1},
        "delegates": ["TfLiteXNNPackDelegate"],
    },
    "cros_gpu_opencl_selected_lines.txt": {
        "timings": {"init": 842.225, "first": 115.098, "warmup_mean": 40.1998, "mean": 35.1349, "count": 1694},
        "min_max_std": (30.394, 42.335, 1.733),
        "warmup_runs": 13,
        "memory": {"peak_rss_bytes": round(74.6641 * MB)},
        "delegation": {"delegated_nodes": 58, "total_nodes": 58, "partitions": 1},
        "delegates": ["TfLiteGpuDelegateV2"],
    },
}


@pytest.mark.parametrize("name", sorted(SUCCESSES))
def test_recorded_successful_runs(name):
    expected = SUCCESSES[name]
    parsed = parse_file(name)
    assert parsed.ok, parsed.failure
    for key, value in expected["timings"].items():
        assert parsed.timings[key] == pytest.approx(value, rel=1e-9), key
    low, high, std = expected["min_max_std"]
    assert (parsed.timings["min"], parsed.timings["max"], parsed.timings["std"]) == pytest.approx((low, high, std))
    assert parsed.timings.get("warmup_runs") == expected.get("warmup_runs")
    assert parsed.timings.get("p50") == expected.get("p50")
    assert parsed.percentiles_ms == expected.get("percentiles", {})
    for key, value in expected["memory"].items():
        assert parsed.memory[key] == value
    assert parsed.memory["source"] == "benchmark_model"
    assert parsed.delegation == expected["delegation"]
    if "delegates" in expected:
        assert parsed.delegates == expected["delegates"]


@pytest.mark.parametrize("name", sorted(SUCCESSES))
def test_sections_validate_against_the_result_schema(name):
    sections = parse_file(name).result_sections()
    Timings.model_validate(sections["timings"])
    Memory.model_validate(sections["memory"])
    Delegation.model_validate(sections["delegation"])


def test_profiler_tables_do_not_replace_the_run_statistics():
    # The op-profiling tables end with `Timings (microseconds): count=50 ... avg=2.9499e+06`:
    # the run statistics must come from the `count=50 ... avg=2.95034e+06` line instead.
    parsed = parse_file("tf28_riscv_mobilenet_v1_op_profiling.txt")
    assert parsed.timings["mean"] == pytest.approx(2950.34)
    assert parsed.timings["max"] == pytest.approx(3189.954)
    assert parsed.model_size_mb == pytest.approx(16.9008)
    assert parsed.session_init_ms == pytest.approx(17.187)


@pytest.mark.parametrize(
    ("name", "first_error"),
    [
        (
            "tf24_yolov5s_int8_nnapi_qti_default_failed.txt",
            "NN API returned error ANEURALNETWORKS_OP_FAILED at line 3779 while completing NNAPI compilation.",
        ),
        (
            "tf24_yolov5s_int8_nnapi_qti_dsp_failed.txt",
            "NN API returned error ANEURALNETWORKS_BAD_DATA at line 1068 while adding operation.",
        ),
    ],
)
def test_recorded_nnapi_failures(name, first_error):
    parsed = parse_file(name, exit_code=1)
    assert not parsed.ok
    failure = parsed.failure
    assert failure.kind == "delegate_failed"
    assert failure.delegate == "NNAPI"
    assert failure.reason == "Failed to apply NNAPI delegate."
    assert failure.errors[0] == first_error
    assert not any("Restored original execution plan" in e for e in failure.errors)
    error = failure.to_error()
    assert isinstance(error, DelegateError)
    assert "ANEURALNETWORKS" in error.message
    assert parsed.timings == {}


def test_failure_is_detected_even_when_the_exit_code_is_zero():
    parsed = parse_file("tf24_yolov5s_int8_nnapi_qti_dsp_failed.txt", exit_code=0)
    assert parsed.failure.kind == "delegate_failed"


def test_truncated_output_is_incomplete():
    text = (DATA / "tf28_riscv_mobilenet_v1_op_profiling.txt").read_text().split("Inference timings")[0]
    parsed = parse_benchmark_output(text, 0)
    assert parsed.failure.kind == "incomplete"
    assert parsed.timings["count"] == 50  # what was printed is still parsed


def test_nonzero_exit_without_summary_and_model_errors():
    crashed = parse_benchmark_output("STARTING!\nLoaded model /x.tflite\n", 139)
    assert crashed.failure.kind == "benchmark_failed"
    assert "139" in crashed.failure.reason
    assert isinstance(crashed.failure.to_error(), RunnerCrashedError)
    bad = parse_benchmark_output("STARTING!\nERROR: Failed to mmap model /x.tflite\nBenchmarking failed.\n", 1)
    assert bad.failure.kind == "model_failed"
    assert isinstance(bad.failure.to_error(), BadInputError)


def test_line_prefixes_are_removed():
    assert clean_line("07-14 13:23:08.980 25289 25289 I tflite  : count=3 first=1") == "count=3 first=1"
    assert clean_line("INFO: Initialized session in 3.337ms.") == "Initialized session in 3.337ms."
    assert clean_line("VERBOSE: Replacing 1 out of 1 node(s)") == "Replacing 1 out of 1 node(s)"


def test_several_subgraphs_and_delegates_add_up():
    text = "\n".join(
        [
            "INFO: Replacing 58 out of 58 node(s) with delegate (TfLiteXNNPackDelegate) node, "
            "yielding 1 partitions for subgraph 0 (main).",
            "INFO: Replacing 3 out of 4 node(s) with delegate (TfLiteXNNPackDelegate) node, "
            "yielding 1 partitions for subgraph 1 (decode).",
        ]
    )
    parsed = parse_benchmark_output(text, 0)
    assert parsed.delegation == {"delegated_nodes": 61, "total_nodes": 62, "partitions": 2}


# --- command line ----------------------------------------------------------------------------


def test_argv_for_each_delegate():
    base = ["/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/m 1.tflite"]
    assert benchmark_argv(base[0], "/data/local/tmp/m 1.tflite") == base
    assert benchmark_argv(base[0], "/data/local/tmp/m 1.tflite", delegate="gpu", threads=4) == [
        *base,
        "--num_threads=4",
        "--use_gpu=true",
    ]
    assert benchmark_argv(base[0], "m", delegate="cpu")[-1] == "--use_xnnpack=false"
    assert benchmark_argv(base[0], "m", delegate="xnnpack")[-1] == "--use_xnnpack=true"
    assert benchmark_argv(base[0], "m", delegate="nnapi", nnapi_accelerator_name="qti-dsp")[-2:] == [
        "--use_nnapi=true",
        "--nnapi_accelerator_name=qti-dsp",
    ]
    external = benchmark_argv(
        base[0],
        "m",
        delegate="external",
        external_delegate_path="/vendor/lib64/libvx_delegate.so",
        external_delegate_options={"cache_file_path": "/tmp/c", "allowed_cache_mode": True},
    )
    assert external[-2:] == [
        "--external_delegate_path=/vendor/lib64/libvx_delegate.so",
        "--external_delegate_options=cache_file_path:/tmp/c;allowed_cache_mode:true",
    ]


def test_argv_settings_match_benchmark_model_defaults():
    argv = benchmark_argv("bm", "m", settings=BenchmarkSettings())
    assert argv[2:] == [
        "--num_runs=50",
        "--min_secs=1",
        "--max_secs=150",
        "--warmup_runs=1",
        "--warmup_min_secs=0.5",
    ]
    custom = benchmark_argv("bm", "m", settings={"num_runs": 200, "run_delay_s": 0.25}, extra_flags={"a": 1})
    assert custom[2:] == ["--num_runs=200", "--run_delay=0.25", "--a=1"]


def test_argv_errors():
    with pytest.raises(ConfigError, match="no delegate"):
        benchmark_argv("bm", "m", delegate="tpu")
    with pytest.raises(ConfigError, match="library path"):
        benchmark_argv("bm", "m", delegate="external")
