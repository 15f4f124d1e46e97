"""The runner's fixed costs: one open per measured configuration, the device's own clock, clean exits.

Real runtimes, the real runner.pyz and its supervisor, real test-built delegate libraries:
- built-in candidates are checked on the measurement itself, with the same attempt fields as a probe;
- an external delegate that segfaults still only takes its probe child down;
- `device_time_s` is the runner's own time and fits inside the controller's `duration_s`;
- the supervisor stops when nobody reads its answer, and its measuring child dies with it.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.servers.procs import alive, children_of, wait_for
from toolkit.profile import ProfileRequest, profile_model
from toolkit.results import BenchmarkSettings, validate_result

QUICK = BenchmarkSettings(warmup_runs=2, warmup_min_s=0.0, num_runs=30, min_s=0.0, max_s=20.0)
LONG = BenchmarkSettings(warmup_runs=1, warmup_min_s=0.0, num_runs=1, min_s=120.0, max_s=120.0)


@pytest.fixture
def local(tmp_path):
    from toolkit.transports import open_transport

    transport = open_transport("local", {"workdir": str(tmp_path / "device")})
    yield transport
    transport.close()


def _request(model, rundir: Path, delegates=("xnnpack",), settings: BenchmarkSettings = QUICK) -> dict:
    """A runner request as the controller builds it (toolkit.profile._runner_request)."""
    return {
        "model": str(model),
        "inputs": None,
        "delegates": list(delegates),
        "profile_order": [],
        "thread_counts": [],
        "delegate_options": {},
        "profile_delegates": {},
        "threads": 1,
        "runtime": "ai_edge_litert",
        "settings": settings.model_dump(mode="json"),
        "thermal_zones": [],
        "seed": 0,
        "parity": True,
        "rundir": str(rundir),
        "requires": [],
        "nonce": uuid.uuid4().hex,
        "timeout_s": 300.0,
    }


@pytest.fixture
def counted_opens(monkeypatch):
    """Every open_model call of the runner and of in-process probes, as (delegate or None)."""
    import delegates
    import delegates.probe

    opened: list = []
    real = delegates.open_model

    def counting(path, choice=None, *args, **kwargs):
        opened.append(getattr(choice, "label", choice))
        return real(path, choice, *args, **kwargs)

    monkeypatch.setattr(delegates, "open_model", counting)
    monkeypatch.setattr(delegates.probe, "open_model", counting)
    yield opened
    gc.unfreeze()  # the measurement froze this test process's objects for the collector


def _measure_here(model, tmp_path, delegates=("xnnpack",)) -> dict:
    from toolkit.runner.measure import Measurement

    return Measurement(_request(model, tmp_path / "run", delegates)).run()


# --- selection on the measurement ---------------------------------------------------------------------


def test_a_single_builtin_delegate_is_opened_once_and_keeps_its_attempt(tflite_cnn_fp32, tmp_path, counted_opens):
    document = _measure_here(tflite_cnn_fp32, tmp_path)
    # The measured open is the probe, the parity reference the accuracy check: two opens, not four.
    assert counted_opens == ["xnnpack", None]
    (attempt,) = document["selection"]["attempts"]
    assert (attempt["delegate"], attempt["outcome"]) == ("xnnpack", "applied")
    details = attempt["details"]
    assert details["delegation"] == {"delegated_nodes": 9, "total_nodes": 9, "partitions": 1, "cpu_ops": []}
    assert details["key"] == "xnnpack/1t"
    assert details["threads"] == 1
    assert 0 <= details["max_rel_error"] <= details["tolerance"] == 1e-3
    assert details["cosine"] > 0.9999
    assert document["delegation"] == details["delegation"]
    assert document["parity"]["cosine"] > 0.9999
    assert document["timings"]["init"] > 0
    assert document["timings"]["count"] >= 30
    assert document["memory"]["peak_rss_bytes"] >= document["memory"]["baseline_rss_bytes"] > 0


def test_the_default_request_judges_speed_on_the_measurement_itself(tflite_cnn_fp32, tmp_path, counted_opens):
    """No --delegate: a preference list, so XNNPACK must also beat the plain CPU kernels."""
    document = _measure_here(tflite_cnn_fp32, tmp_path, delegates=())
    attempts = document["selection"]["attempts"]
    first = attempts[0]
    assert first["delegate"] == "xnnpack"
    assert first["details"]["p50_ms"] > 0
    assert first["details"]["baseline_ms"] > 0
    chosen = document["selection"]["chosen"]
    assert chosen == document["config"]["delegate"] == attempts[-1]["delegate"]
    if first["outcome"] == "applied":
        # The figure that decided is the measurement's own p50, not a separate probe's.
        assert first["details"]["p50_ms"] == document["timings"]["p50"]
        assert counted_opens == ["xnnpack", None]
    else:
        assert first["outcome"] == "slower"
        assert [(a["delegate"], a["outcome"]) for a in attempts] == [("xnnpack", "slower"), ("cpu", "applied")]
        assert counted_opens == ["xnnpack", None, "cpu", None]


def test_an_inaccurate_builtin_falls_back_and_the_next_one_is_measured(tflite_cnn_fp32, tmp_path):
    from delegates import get_runtime, parse_model, select_delegate
    from toolkit.runner.clock import Phases
    from toolkit.runner.measure import Trial

    request = _request(tflite_cnn_fp32, tmp_path / "run")
    trial = Trial(request, get_runtime("ai_edge_litert"), parse_model(tflite_cnn_fp32), Phases(), None)
    # A zero tolerance makes XNNPACK's float rounding (about 1e-8 here) count as inaccurate.
    report = select_delegate(tflite_cnn_fp32, ["xnnpack"], threads=1, tolerance=0.0, check_speed=False, trial=trial)
    outcomes = [(a.delegate, a.outcome) for a in report.attempts]
    assert outcomes == [("xnnpack", "inaccurate"), ("cpu", "applied")]
    assert "differ from the CPU reference" in report.attempts[0].reason
    assert report.attempts[0].details["max_rel_error"] > 0
    assert report.chosen == "cpu"
    assert trial.has_measured(report.choice)  # the CPU kernels were measured in turn, not XNNPACK
    assert trial.measured.timings["count"] >= 30


def test_a_crashing_external_delegate_only_kills_its_probe_child(tflite_cnn_fp32, delegate_libraries, local):
    segv = f"external:{delegate_libraries['segv']}"
    result = profile_model(ProfileRequest(tflite_cnn_fp32, delegates=(segv, "xnnpack"), settings=QUICK), local)
    validate_result(result)
    attempts = result["selection"]["attempts"]
    assert [(a["delegate"], a["outcome"]) for a in attempts] == [(segv, "crashed"), ("xnnpack", "applied")]
    assert "SIGSEGV" in attempts[0]["reason"]
    assert attempts[1]["details"]["delegation"]["delegated_nodes"] == 9
    assert result["config"]["delegate"] == "xnnpack"
    assert result["timings"]["count"] >= 30
    assert result["parity"]["cosine"] > 0.9999


# --- the device's own clock ---------------------------------------------------------------------------


def test_device_time_is_the_runners_own_and_fits_in_the_call(tflite_cnn_fp32, local):
    result = profile_model(ProfileRequest(tflite_cnn_fp32, delegates=("xnnpack",), settings=QUICK), local)
    timings = result["timings"]
    measured_s = (sum(timings["samples"]) + timings["warmup_mean"] * timings["warmup_runs"]) / 1000.0
    assert measured_s <= result["device_time_s"] <= result["duration_s"]


def test_phases_name_where_the_runners_time_went(tflite_cnn_fp32, local):
    from toolkit.profile import RUNNER_MODES, model_file, plan_run

    request = ProfileRequest(tflite_cnn_fp32, delegates=("xnnpack",), settings=QUICK)
    document = RUNNER_MODES["python"](local, request, plan_run(request, None, local), model_file(tflite_cnn_fp32))
    phases = document["phases_ms"]
    for name in ("interpreter start", "child start", "runtime import", "selection", "init", "timed runs", "cleanup"):
        assert phases[name] >= 0, name
    assert "speed baseline" not in phases  # one delegate asked for by name: no speed comparison
    assert phases["timed runs"] >= sum(document["timings"]["samples"])


def test_process_age_counts_from_the_kernels_record_of_the_start():
    """The runner's first line runs 0.3 s after the process started: the age still counts that time."""
    script = (
        "import time; time.sleep(0.3)\n"
        "from toolkit.runner.clock import kernel_start_boottime, process_age_s\n"
        "print(process_age_s(), kernel_start_boottime()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    age, tick = map(float, out.split())
    assert age >= 0.3 - tick  # a lower bound within one clock tick


# --- supervisor and child -------------------------------------------------------------------------------


def _start_runner(model, tmp_path) -> tuple[subprocess.Popen, Path]:
    from toolkit.runner.pack import build_runner
    from toolkit.runner.protocol import encode_request

    rundir = tmp_path / "runs" / "long"
    token = encode_request(_request(model, rundir, settings=LONG))
    proc = subprocess.Popen(
        [sys.executable, str(build_runner().path), "profile", token], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    return proc, rundir


def test_supervisor_stops_when_nobody_reads_its_answer(tflite_cnn_fp32, tmp_path):
    proc, rundir = _start_runner(tflite_cnn_fp32, tmp_path)
    try:
        wait_for(lambda: (rundir / "runner.log").exists() and children_of(proc.pid), 60, "the measurement to start")
        (child,) = children_of(proc.pid)
        proc.stdout.close()  # the controller is gone; the supervisor's parent (us) is not
        assert proc.wait(timeout=30) == 98  # ORPHANED_STATUS, long before the 120 s measurement ends
        wait_for(lambda: not alive(child), 10, "the measuring child to be stopped")
        assert not rundir.exists()
    finally:
        proc.kill()
        proc.wait()


def test_the_measuring_child_dies_with_its_supervisor(tflite_cnn_fp32, tmp_path):
    proc, rundir = _start_runner(tflite_cnn_fp32, tmp_path)
    try:
        wait_for(lambda: (rundir / "runner.log").exists() and children_of(proc.pid), 60, "the measurement to start")
        (child,) = children_of(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # what the OOM killer does to the supervisor
        assert proc.wait(timeout=10) == -signal.SIGKILL
        wait_for(lambda: not alive(child), 10, "the orphaned measurement to die with its supervisor")
    finally:
        proc.kill()
        proc.wait()


# --- statistics -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 5000])
def test_percentiles_are_numpys_linear_method_exactly(n):
    from toolkit.runner.stats import percentiles

    rng = np.random.default_rng(n)
    for _ in range(10):
        values = rng.lognormal(size=n).round(6)
        qs = (0, 5, 50, 90, 99, 100)
        assert percentiles(values, qs) == [float(v) for v in np.percentile(values, qs)]


@pytest.mark.parametrize("body", ["{}", '{"a":1}', '{"a": {"b": [1, 2]}}\n', '{"s": "}{"} ', '{"e": {}}'])
def test_the_supervisor_adds_its_fields_to_the_childs_json_without_decoding_it(body):
    import json

    from toolkit.runner.protocol import with_fields

    fields = {"rundir_removed": True, "device_time_s": 0.25}
    assert json.loads(with_fields(body, fields)) == {**json.loads(body), **fields}
    assert json.loads(with_fields(body, {})) == json.loads(body)
    with pytest.raises(ValueError):
        with_fields("[1, 2]", fields)


def test_without_fork_the_measurement_runs_in_a_new_interpreter_with_the_same_document(tflite_cnn_fp32, tmp_path):
    """Platforms without fork() spawn `runner.pyz measure`: phases and device time still arrive."""
    from toolkit.runner.pack import build_runner
    from toolkit.runner.protocol import encode_request, unframe

    pyz = str(build_runner().path)
    request = _request(tflite_cnn_fp32, tmp_path / "runs" / "spawned")
    code = (
        f"import sys; sys.path.insert(0, {pyz!r})\n"
        "import toolkit.runner.supervisor as supervisor\n"
        "supervisor.ForkedChild.available = staticmethod(lambda: False)\n"
        "from toolkit.runner.__main__ import main\n"
        f"sys.argv = [{pyz!r}, 'profile', {encode_request(request)!r}]\n"
        "raise SystemExit(main())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    document = unframe(proc.stdout, request["nonce"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert document["selection"]["attempts"][0]["outcome"] == "applied"
    assert document["timings"]["count"] >= 30
    assert document["device_time_s"] > 0
    assert document["phases_ms"]["child start"] > 0  # the new interpreter's start, imports included
    assert document["rundir_removed"] is True


def test_the_speed_baseline_stops_once_the_comparison_is_settled(tflite_cnn_fp32):
    """Six runs all on one side of the boundary settle "slower or not": the rest of the budget is not spent."""
    from delegates import open_model
    from delegates.probe import CLEAR_RUNS, timed_runs

    reference = open_model(tflite_cnn_fp32, None, threads=1)
    reference.set_inputs(reference.random_inputs(0))
    assert len(timed_runs(reference, 30.0, 3, 500, clear_of=1e9)) == CLEAR_RUNS  # all far below
    assert len(timed_runs(reference, 30.0, 3, 500, clear_of=0.0)) == CLEAR_RUNS  # all above
    assert len(timed_runs(reference, 0.0, 3, 500)) == 3  # no boundary: the budget decides
