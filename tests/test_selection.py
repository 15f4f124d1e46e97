"""Delegate selection with fallback, against real runtimes and real (test-built) delegate libraries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import pytest

from delegates import load_interpreter, select_delegate
from toolkit.errors import ConfigError, DelegateError
from toolkit.results import Selection

LIBZ = (
    "/usr/lib/x86_64-linux-gnu/libz.so.1",
    "/lib/x86_64-linux-gnu/libz.so.1",
    "/usr/lib/aarch64-linux-gnu/libz.so.1",
)


def _by_delegate(report):
    return {a.delegate: a for a in report.attempts}


def test_xnnpack_is_selected_and_verified(tflite_cnn_fp32):
    report = select_delegate(tflite_cnn_fp32, ["xnnpack"], threads=2, runtime="ai_edge_litert")
    assert report.chosen == "xnnpack"
    attempt = report.attempts[-1]
    assert attempt.outcome == "applied"
    assert attempt.details["delegation"] == {"delegated_nodes": 9, "total_nodes": 9, "partitions": 1, "cpu_ops": []}
    assert attempt.details["max_rel_error"] <= attempt.details["tolerance"]
    assert attempt.details["p50_ms"] > 0
    assert attempt.details["baseline_ms"] > 0
    assert report.delegation["delegated_nodes"] == 9
    Selection.model_validate(report.to_dict())


def test_int8_xnnpack_is_partial_with_the_cpu_ops_named(tflite_cnn_int8):
    report = select_delegate(tflite_cnn_int8, "xnnpack", runtime="ai_edge_litert", check_speed=False)
    attempt = report.attempts[-1]
    assert (report.chosen, attempt.outcome) == ("xnnpack", "partial")
    assert "10/11 nodes delegated in 2 partition(s)" in attempt.reason
    assert "SOFTMAX" in attempt.reason


def test_accelerators_missing_here_fall_back_to_xnnpack(tflite_cnn_fp32):
    report = select_delegate(tflite_cnn_fp32, "gpu,nnapi,edgetpu,xnnpack", check_speed=False)
    attempts = _by_delegate(report)
    for name in ("gpu", "nnapi", "edgetpu"):
        assert attempts[name].outcome == "not_found"
        assert attempts[name].reason.startswith("library not found")
    assert report.chosen == "xnnpack"
    assert [a.delegate for a in report.attempts] == ["gpu", "nnapi", "edgetpu", "xnnpack"]


def test_fallback_to_xnnpack_is_implicit(tflite_cnn_fp32):
    report = select_delegate(tflite_cnn_fp32, ["gpu"], check_speed=False)
    assert [a.outcome for a in report.attempts] == ["not_found", "applied"]
    assert report.chosen == "xnnpack"


def test_a_file_that_is_not_a_delegate_fails_to_load(tflite_cnn_fp32, tmp_path):
    not_elf = tmp_path / "libfake.so"
    not_elf.write_bytes(b"this is not a shared library\n")
    libz = next((p for p in LIBZ if os.path.exists(p)), None)
    request = [f"external:{not_elf}"] + ([f"external:{libz}"] if libz else [])
    report = select_delegate(tflite_cnn_fp32, request, check_speed=False)
    attempts = _by_delegate(report)
    assert attempts[f"external:{not_elf}"].outcome == "failed_to_load"
    assert attempts[f"external:{not_elf}"].reason.startswith(f"failed to load {not_elf}: ")
    if libz:
        assert attempts[f"external:{libz}"].outcome == "failed_to_load"
        assert "tflite_plugin_create_delegate" in attempts[f"external:{libz}"].reason
    assert report.chosen == "xnnpack"


def test_a_segfaulting_delegate_is_reported_as_crashed_and_the_caller_continues(tflite_cnn_fp32, delegate_libraries):
    segv, noop = delegate_libraries["segv"], delegate_libraries["noop"]
    report = select_delegate(tflite_cnn_fp32, [f"external:{segv}", f"external:{noop}", "xnnpack"], check_speed=False)
    attempts = _by_delegate(report)
    crashed = attempts[f"external:{segv}"]
    assert crashed.outcome == "crashed"
    assert "SIGSEGV" in crashed.reason
    # a fresh probe child carried on with the next candidates
    assert attempts[f"external:{noop}"].outcome == "rejected"
    assert "took none of the 9 nodes" in attempts[f"external:{noop}"].reason
    assert report.chosen == "xnnpack"
    assert os.getpid() > 0  # still here


def test_plugin_failures_and_options_reach_the_library(tflite_cnn_fp32, delegate_libraries, tmp_path):
    noop = f"external:{delegate_libraries['noop']}"
    log = tmp_path / "options.log"
    report = select_delegate(
        tflite_cnn_fp32, [noop], delegate_options={noop: {"fail": 1, "log": str(log)}}, check_speed=False
    )
    attempt = _by_delegate(report)[noop]
    assert attempt.outcome == "failed_to_load"
    assert "noop delegate: asked to fail" in attempt.reason
    assert sorted(log.read_text().split()) == ["fail=1", f"log={log}"]


def test_a_hanging_delegate_times_out_as_crashed(tflite_cnn_fp32, delegate_libraries):
    noop = f"external:{delegate_libraries['noop']}"
    report = select_delegate(
        tflite_cnn_fp32, [noop], delegate_options={noop: {"sleep": 30}}, check_speed=False, timeout_s=3
    )
    attempt = _by_delegate(report)[noop]
    assert attempt.outcome == "crashed"
    assert "timed out" in attempt.reason
    assert report.chosen == "xnnpack"


def test_numerically_off_candidates_are_rejected_against_the_cpu_reference(tflite_cnn_fp32):
    """With a zero tolerance XNNPACK's float rounding differences (about 1e-8 here) count as inaccurate."""
    report = select_delegate(tflite_cnn_fp32, ["xnnpack"], tolerance=0.0, check_speed=False)
    attempts = _by_delegate(report)
    assert attempts["xnnpack"].outcome == "inaccurate"
    assert "differ from the CPU reference" in attempts["xnnpack"].reason
    assert report.chosen == "cpu"


def test_slower_than_cpu_is_recorded(tflite_cnn_fp32):
    """A margin of 0 makes any measured time "slower": the branch runs with real measurements."""
    report = select_delegate(tflite_cnn_fp32, ["xnnpack"], threads=1, slower_margin=0.0)
    attempt = _by_delegate(report)["xnnpack"]
    assert attempt.outcome == "slower"
    assert "slower than plain CPU kernels" in attempt.reason
    assert report.chosen == "cpu"


def test_model_requirements_reject_before_loading(tflite_cnn_fp32, tflite_cnn_int8, delegate_libraries):
    """An Edge TPU library that exists (the noop plugin stands in) still refuses uncompiled models."""
    profile = {"edgetpu": {"library": str(delegate_libraries["noop"]), "options": {}}}
    for path, words in ((tflite_cnn_fp32, "not fully int8"), (tflite_cnn_int8, "not compiled for the Edge TPU")):
        report = select_delegate(path, ["edgetpu"], profile_delegates=profile, check_speed=False)
        attempt = _by_delegate(report)["edgetpu"]
        assert attempt.outcome == "rejected"
        assert words in attempt.reason


def test_tflite_runtime_int8_warns_and_falls_back_to_cpu(tflite_cnn_int8):
    report = select_delegate(tflite_cnn_int8, ["xnnpack"], runtime="tflite_runtime", check_speed=False)
    assert _by_delegate(report)["xnnpack"].outcome == "rejected"
    assert report.chosen == "cpu"
    assert any("never applies XNNPACK to int8" in w for w in report.warnings)


def test_auto_measures_candidates_and_picks_the_fastest(tflite_cnn_fp32):
    report = select_delegate(tflite_cnn_fp32, "auto", thread_counts=[1, 2], auto_budget_s=0.6)
    assert set(report.measurements_ms) == {"xnnpack/1t", "xnnpack/2t", "cpu/1t", "cpu/2t"}
    best = min(report.measurements_ms, key=report.measurements_ms.get)
    assert report.choice.key == best
    losers = [a for a in report.attempts if a.details["key"] != best]
    assert losers
    assert all(a.outcome == "slower" and "auto keeps the fastest" in a.reason for a in losers)
    Selection.model_validate(report.to_dict())


def test_auto_survives_a_crashing_candidate(tflite_cnn_fp32, delegate_libraries):
    segv = f"external:{delegate_libraries['segv']}"
    report = select_delegate(tflite_cnn_fp32, ["auto", segv], thread_counts=[1], auto_budget_s=0.3)
    assert _by_delegate(report)[segv].outcome == "crashed"
    assert set(report.measurements_ms) == {"xnnpack/1t", "cpu/1t"}  # raced in a fresh child
    assert report.chosen in ("xnnpack", "cpu")


def test_unknown_names_and_options_fail_early_with_suggestions(tflite_cnn_fp32):
    with pytest.raises(ConfigError, match="did you mean 'xnnpack'"):
        select_delegate(tflite_cnn_fp32, ["xnnpak"])
    with pytest.raises(ConfigError, match="did you mean 'precision'"):
        select_delegate(tflite_cnn_fp32, ["gpu"], delegate_options={"gpu": {"precison": "fp16"}})


def test_nothing_runs_is_a_delegate_error(tflite_custom_op):
    with pytest.raises(DelegateError) as info:
        select_delegate(tflite_custom_op, ["xnnpack"])
    assert "EdgetkTestOp" in info.value.message
    assert info.value.exit_code == 7


def test_load_interpreter_returns_the_runner_and_report(tflite_cnn_fp32_nchw):
    runner, report = load_interpreter(tflite_cnn_fp32_nchw, ["gpu", "xnnpack"], threads=1, check_speed=False)
    assert report.chosen == runner.choice.label == "xnnpack"
    assert runner.delegation()["delegated_nodes"] == 9
    assert list(runner.invoke(runner.random_inputs(0))) == ["probs"]


def test_probe_child_runs_from_inside_a_zipapp(tmp_path, repo_root, tflite_cnn_fp32, delegate_libraries):
    """The runner ships as runner.pyz: the probe child must find `delegates` inside the archive."""
    archive = tmp_path / "runner.pyz"
    with zipfile.ZipFile(archive, "w") as zf:
        for folder in ("delegates",):
            for path in sorted((repo_root / folder).glob("*.py")):
                zf.write(path, f"{folder}/{path.name}")
        zf.write(repo_root / "toolkit" / "errors.py", "toolkit/errors.py")
        zf.writestr("toolkit/__init__.py", "")
        zf.writestr(
            "__main__.py",
            textwrap.dedent(
                """
                import json, sys
                import delegates
                from delegates import select_delegate
                report = select_delegate(sys.argv[1], sys.argv[2].split(","), check_speed=False)
                print(json.dumps({"file": delegates.__file__, "attempts": [a.to_dict() for a in report.attempts]}))
                """
            ),
        )
    request = f"external:{delegate_libraries['segv']},xnnpack"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(archive), str(tflite_cnn_fp32), request],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "runner.pyz" in result["file"]
    assert [(a["delegate"].split("/")[-1], a["outcome"]) for a in result["attempts"]] == [
        ("libsegv.so", "crashed"),
        ("xnnpack", "applied"),
    ]


def test_profile_preference_is_used_when_no_request(tflite_cnn_fp32, delegate_libraries):
    order = ["vx", "xnnpack"]
    profile = {"vx": {"library": str(delegate_libraries["noop"]), "options": {}}}
    report = select_delegate(tflite_cnn_fp32, None, profile_order=order, profile_delegates=profile, check_speed=False)
    attempts = _by_delegate(report)
    assert attempts["vx"].outcome == "rejected"  # vx needs int8; the float model is refused up front
    assert report.chosen == "xnnpack"


def test_options_the_python_runtimes_cannot_apply_are_warned_about(tflite_cnn_fp32):
    report = select_delegate(
        tflite_cnn_fp32, ["xnnpack"], delegate_options={"xnnpack": {"fp16": True}}, check_speed=False
    )
    assert report.chosen == "xnnpack"
    assert any("fp16 is honoured by benchmark_model only" in w for w in report.warnings)
