"""The delegate registry, library lookup, the GPU loader's ctypes marshalling, and the delegates/run commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from delegates.choice import parse_choice
from delegates.registry import SPECS, find_library, get_spec, load_delegate_library, machine_summary
from delegates.runtime import get_runtime
from toolkit.cli import main
from toolkit.errors import ConfigError, DelegateError

REQUIRED = {"xnnpack", "gpu", "nnapi", "edgetpu", "hexagon", "armnn", "vx", "qnn", "external"}


def test_registry_holds_every_delegate_as_a_frozen_spec():
    assert set(SPECS) >= REQUIRED
    for spec in SPECS.values():
        assert spec.summary
        assert spec.loader in ("builtin", "plugin", "gpu_v2")
        with pytest.raises(AttributeError):
            spec.name = "other"  # frozen
    assert get_spec("edgetpu").library_names("linux") == ("libedgetpu.so.1",)
    assert get_spec("edgetpu").library_names("darwin") == ("libedgetpu.1.dylib",)
    assert get_spec("edgetpu").library_names("windows") == ("edgetpu.dll",)
    assert get_spec("edgetpu").requirements.edgetpu_compiled
    assert "/vendor/lib64" in get_spec("qnn").search_paths["android"]


@pytest.mark.parametrize(
    ("delegate", "options", "expected"),
    [
        ("gpu", {"precision": "fp32", "quantized": True}, {"precision": "fp32", "quantized": "true"}),
        (
            "nnapi",
            {"execution_preference": "low_power", "allow_fp16": "1"},
            {"execution_preference": "low_power", "allow_fp16": "1"},
        ),
        (
            "armnn",
            {"backends": "GpuAcc,CpuAcc", "number-of-threads": 4},
            {"backends": "GpuAcc,CpuAcc", "number-of-threads": "4"},
        ),
        ("external", {"anything": 3}, {"anything": "3"}),
    ],
)
def test_options_are_validated_and_normalized(delegate, options, expected):
    assert get_spec(delegate).validate_options(options) == expected


@pytest.mark.parametrize(
    ("delegate", "options", "words"),
    [
        ("gpu", {"precison": "fp16"}, "did you mean 'precision'"),
        ("gpu", {"precision": "fp8"}, "expected one of fp16, fp32"),
        ("qnn", {"htp_performance_mode": 42}, "must be <= 8"),
        ("armnn", {"number-of-threads": "many"}, "expected a whole number"),
        ("edgetpu", {"device": ""}, "must not be empty"),
        ("nnapi", {"disable_cpu": "maybe"}, "expected true or false"),
    ],
)
def test_bad_options_are_config_errors(delegate, options, words):
    with pytest.raises(ConfigError, match=words):
        get_spec(delegate).validate_options(options)


def test_unknown_delegate_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'edgetpu'"):
        get_spec("edgtpu")


def test_library_lookup_searches_ld_library_path(tmp_path, monkeypatch):
    spec = get_spec("edgetpu")
    assert not find_library(spec, target="linux").found or os.path.exists("/usr/lib/x86_64-linux-gnu/libedgetpu.so.1")
    (tmp_path / "libedgetpu.so.1").write_bytes(b"\x7fELF")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    lookup = find_library(spec, target="linux")
    assert lookup.path == str(tmp_path / "libedgetpu.so.1")
    explicit = find_library(spec, explicit=str(tmp_path / "missing.so"))
    assert not explicit.found
    assert explicit.searched == (str(tmp_path / "missing.so"),)
    rows = {row["delegate"]: row for row in machine_summary()}
    assert rows["edgetpu"]["status"] == "found"
    assert rows["nnapi"]["status"] == "not available on linux"


def test_not_found_errors_say_where_it_looked():
    runtime = get_runtime()
    with pytest.raises(DelegateError) as info:
        load_delegate_library(parse_choice("gpu"), runtime)
    assert info.value.details["outcome"] == "not_found"
    assert "library not found" in info.value.message
    assert info.value.details["searched"]


def test_gpu_loader_marshals_the_v2_options_struct(delegate_libraries, tmp_path, monkeypatch):
    """A real call through ctypes into a C library that records the struct it receives."""
    record = tmp_path / "gpu.txt"
    monkeypatch.setenv("EDGETK_GPU_RECORD", str(record))
    profile = {"gpu": {"library": str(delegate_libraries["gpu_v2_recorder"]), "options": {"backend": "cl"}}}
    choice = parse_choice("gpu")
    choice = type(choice)("gpu", options=(("inference_preference", "sustained_speed"), ("precision", "fp32")))
    with pytest.raises(DelegateError) as info:
        load_delegate_library(choice, get_runtime(), profile)
    assert info.value.details["outcome"] == "failed_to_load"
    assert "returned NULL" in info.value.message
    fields = dict(line.split("=", 1) for line in record.read_text().splitlines())
    assert fields["is_precision_loss_allowed"] == "0"
    assert fields["inference_priority1"] == "1"  # MAX_PRECISION for fp32
    assert fields["inference_preference"] == "1"  # SUSTAINED_SPEED
    assert fields["experimental_flags"] == str(1 | 2)  # library default ENABLE_QUANT kept, CL_ONLY added
    assert fields["max_delegated_partitions"] == "7"  # untouched library default survives


def test_delegates_command_lists_runtimes_without_importing_tensorflow(repo_root):
    code = (
        "import sys, json\nfrom click.testing import CliRunner\nfrom toolkit.cli import main\n"
        "r = CliRunner().invoke(main, ['delegates', '--json'])\n"
        "print(json.dumps({'code': r.exit_code, 'out': r.output, 'tf': 'tensorflow' in sys.modules}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root, check=True)
    result = json.loads(proc.stdout)
    assert result["code"] == 0
    assert result["tf"] is False
    report = json.loads(result["out"])
    runtimes = {r["name"]: r for r in report["runtimes"]}
    assert runtimes["ai_edge_litert"]["installed"] is True
    assert runtimes["ai_edge_litert"]["version"]
    assert runtimes["tflite_runtime"]["version"] == "2.14.0"
    delegates = {d["delegate"]: d for d in report["delegates"]}
    assert delegates["xnnpack"]["status"] == "built in"
    assert delegates["gpu"]["status"] == "not found"


def test_delegates_command_for_a_profile():
    result = CliRunner().invoke(main, ["delegates", "--profile", "galaxy-s24", "--json"])
    assert result.exit_code == 0
    rows = {d["delegate"]: d for d in json.loads(result.output)["delegates"]}
    assert rows["qnn"]["library"] == "/data/local/tmp/libQnnTFLiteDelegate.so"
    assert rows["qnn"]["preferred_rank"] == 1
    assert rows["gpu"]["benchmark_flag"] == "--use_gpu=true"
    text = CliRunner().invoke(main, ["delegates", "--profile", "rpi5-coral"])
    assert "device=usb" in text.output


def test_run_command_reports_selection_and_outputs(tflite_cnn_fp32_nchw, tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(tflite_cnn_fp32_nchw),
            "--delegate",
            "gpu,nnapi,edgetpu",
            "--threads",
            "1",
            "--input",
            str(tmp_path / "x.npy"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    selection = document["selection"]
    assert [(a["delegate"], a["outcome"]) for a in selection["attempts"]] == [
        ("gpu", "not_found"),
        ("nnapi", "not_found"),
        ("edgetpu", "not_found"),
        ("xnnpack", "applied"),
    ]
    assert selection["chosen"] == "xnnpack"
    assert document["delegation"]["delegated_nodes"] == 9
    output = document["outputs"][0]
    assert output["name"] == "probs"
    assert output["shape"] == [1, 10]
    assert len(output["top5"]) == 5
    text = CliRunner().invoke(main, ["run", str(tflite_cnn_fp32_nchw), "--delegate", "gpu"])
    assert text.exit_code == 0
    assert "library not found" in text.output
    assert "chosen: xnnpack" in text.output


def test_run_command_with_profile_and_bad_option(tflite_cnn_int8):
    result = CliRunner().invoke(main, ["run", str(tflite_cnn_int8), "--profile", "rpi4", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["runtime"]["name"] == "tflite_runtime"  # the profile's runtime
    assert document["selection"]["chosen"] == "cpu"
    assert any("never applies XNNPACK to int8" in w for w in document["selection"]["warnings"])
    bad = CliRunner().invoke(
        main, ["run", str(tflite_cnn_int8), "--delegate", "gpu", "--delegate-option", "precison=fp16"]
    )
    assert bad.exit_code == 4
    assert "none of the requested delegates" in bad.output
