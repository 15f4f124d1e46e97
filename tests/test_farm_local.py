"""`edgetk farm run` end to end on the local device with the real profiler: results stored once,
deterministic failures not retried, resume after SIGKILL and after Ctrl-C, JSON progress events."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers.procs import ProcessHandle, descendants, send_all
from toolkit.errors import ExitCode
from toolkit.results import validate_result
from toolkit.store import open_store

REPO = Path(__file__).resolve().parents[1]
QUICK = "settings: {warmup_runs: 1, warmup_min_s: 0.0, num_runs: 20, min_s: 0.05, max_s: 2}\n"


@pytest.fixture
def farm_dir(tmp_path, tflite_cnn_fp32, tflite_cnn_int8, tflite_corrupt) -> Path:
    shutil.copy(tflite_cnn_fp32, tmp_path / "cnn_fp32.tflite")
    shutil.copy(tflite_cnn_int8, tmp_path / "cnn_int8.tflite")
    shutil.copy(tflite_corrupt, tmp_path / "broken.tflite")
    return tmp_path


def edgetk(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolkit.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_run_stores_each_job_once_and_resume_runs_nothing_twice(farm_dir):
    farm = farm_dir / "farm.yaml"
    farm.write_text(
        "name: local-e2e\nmodels: [cnn_fp32.tflite, cnn_int8.tflite, broken.tflite]\n"
        "matrix: {delegates: [xnnpack, default], threads: [1, 2]}\n"
        + QUICK
        + "retries: {attempts: 3, backoff_s: 0.1}\n"
    )
    first = edgetk("farm", "run", str(farm), "--json")
    assert first.returncode == ExitCode.FARM_INCOMPLETE, first.stderr  # the broken model cannot succeed
    assert "4 job(s) not done (4 bad_input)" in first.stderr
    stream = events(first.stdout)
    assert stream[0]["event"] == "farm_started"
    assert stream[0]["planned"] == 12
    assert stream[-1]["event"] == "farm_finished"
    finished = [e for e in stream if e["event"] == "job_finished"]
    assert len(finished) == 12
    broken = [e for e in finished if "broken" in e["job"]]
    assert {e["status"] for e in broken} == {"failed"}
    assert all(e["attempts"] == 1 for e in broken)  # a rejected model is not retried
    assert not [e for e in stream if e["event"] == "job_retry"]

    with open_store(farm_dir / "local-e2e.results.db") as store:
        rows = store.rows("local-e2e")
        assert len(rows) == 12
        assert len({r["job_id"] for r in rows}) == 12
        assert sorted(r["status"] for r in rows).count("ok") == 8
        for document in store.documents("local-e2e"):
            result = validate_result(document)
            assert result.job is not None
            if result.status == "ok":
                assert result.timings.p50 > 0
                assert result.config.threads in (1, 2)
        failure = next(d for d in store.documents("local-e2e", statuses=["failed"]))
        assert failure["error"]["kind"] == "bad_input"
        assert "not a valid" in failure["error"]["message"]

    again = edgetk("farm", "run", str(farm), "--json")
    assert again.returncode == ExitCode.FARM_INCOMPLETE
    resumed = events(again.stdout)
    assert resumed[0]["pending"] == 0  # deterministic failures are kept, successes are done
    assert not [e for e in resumed if e["event"] == "job_started"]

    retried = edgetk("farm", "run", str(farm), "--json", "--retry-failed")
    assert events(retried.stdout)[0]["pending"] == 4
    with open_store(farm_dir / "local-e2e.results.db") as store:
        assert len(store.rows("local-e2e")) == 12

    status = edgetk("farm", "status", str(farm), "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["totals"] == {"done": 8, "failed": 4, "skipped": 0, "remaining": 0}

    report = edgetk("report", str(farm_dir / "local-e2e.results.db"), "-o", str(farm_dir / "report.html"))
    assert report.returncode == 0, report.stderr
    assert "data:image/png;base64," in (farm_dir / "report.html").read_text()


def _start(farm: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli", "farm", "run", str(farm), "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_finished_jobs(proc: subprocess.Popen, count: int) -> list[dict]:
    seen: list[dict] = []
    while len([e for e in seen if e["event"] == "job_finished"]) < count:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"farm run ended early: {proc.wait()} {proc.stderr.read()[-2000:]}")
        seen.append(json.loads(line))
    return seen


def _kill_leftovers(leftovers: list[ProcessHandle]) -> None:
    """The runner children of a killed controller: stop those still there (handles, not PIDs:
    by now a PID may belong to another process)."""
    send_all(leftovers, signal.SIGKILL)


def _slow_farm(farm_dir: Path, name: str) -> Path:
    farm = farm_dir / f"{name}.yaml"
    farm.write_text(
        f"name: {name}\nmodels: [cnn_fp32.tflite, cnn_int8.tflite]\n"
        "matrix: {delegates: [xnnpack], threads: [1, 2, 3, 4]}\n"
        "settings: {warmup_runs: 1, warmup_min_s: 0.0, num_runs: 100000, min_s: 0.4, max_s: 0.4}\n"
    )
    return farm


def test_sigkill_of_the_controller_then_resume_loses_and_duplicates_nothing(farm_dir):
    farm = _slow_farm(farm_dir, "killed")
    proc = _start(farm)
    try:
        before_kill = _wait_for_finished_jobs(proc, 3)
        leftovers = descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _kill_leftovers(leftovers)
    finished_before = {e["job_id"] for e in before_kill if e["event"] == "job_finished"}

    with open_store(farm_dir / "killed.results.db") as store:
        stored = store.status_by_job("killed")
        for document in store.documents("killed"):
            validate_result(document)  # whatever was stored is whole
    assert finished_before <= set(stored)  # reported finished means stored
    assert len(stored) < 8

    resumed = edgetk("farm", "run", str(farm), "--json")
    assert resumed.returncode == 0, resumed.stderr
    stream = events(resumed.stdout)
    assert stream[0]["pending"] == 8 - len(stored)
    rerun = {e["job_id"] for e in stream if e["event"] == "job_finished"}
    assert not rerun & set(stored)  # nothing that was stored ran again
    with open_store(farm_dir / "killed.results.db") as store:
        rows = store.rows("killed")
    assert len(rows) == 8
    assert len({r["job_id"] for r in rows}) == 8
    assert {r["status"] for r in rows} == {"ok"}


def test_ctrl_c_stops_cleanly_says_how_to_resume_and_stores_no_partial_result(farm_dir):
    farm = _slow_farm(farm_dir, "interrupted")
    proc = _start(farm)
    try:
        seen = _wait_for_finished_jobs(proc, 1)
        leftovers = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _kill_leftovers(leftovers)
    time.sleep(0.2)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "interrupted" in err
    assert f"resume with: edgetk farm run {farm}" in err
    seen += events(out)
    assert seen[-1]["event"] == "farm_interrupted"
    reported = {e["job_id"] for e in seen if e["event"] == "job_finished"}
    with open_store(farm_dir / "interrupted.results.db") as store:
        stored = set(store.status_by_job("interrupted"))
    assert stored == reported  # exactly the jobs it said were finished; the running one was abandoned

    resumed = edgetk("farm", "run", str(farm), "--json")
    assert resumed.returncode == 0, resumed.stderr
    with open_store(farm_dir / "interrupted.results.db") as store:
        assert len(store.rows("interrupted")) == 8


@pytest.mark.slow
def test_source_model_is_converted_once_per_variant_and_cached_by_content(tmp_path, repo_root):
    shutil.copytree(repo_root / "examples" / "digits", tmp_path / "digits")
    farm = tmp_path / "farm.yaml"
    farm.write_text("models: [digits/digits.onnx]\n" + QUICK)  # the three-line farm file (plus quick settings)
    first = edgetk("farm", "run", str(farm), "--json")
    assert first.returncode == 0, first.stderr
    stream = events(first.stdout)
    assert [e["variants"] for e in stream if e["event"] == "conversion_started"] == [["fp32", "int8"]]
    finished = [e for e in stream if e["event"] == "job_finished"]
    assert [e["job"].split(" ")[0] for e in finished] == ["digits/fp32", "digits/int8"]
    cache = tmp_path / ".edgetk-cache"
    (folder,) = cache.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "digits.fp32.report.json",
        "digits.fp32.tflite",
        "digits.int8.report.json",
        "digits.int8.tflite",
    ]

    farm.write_text("models: [digits/digits.onnx]\nmatrix: {threads: [1]}\n" + QUICK)  # new jobs, same models
    second = events(edgetk("farm", "run", str(farm), "--json").stdout)
    assert not [e for e in second if e["event"] == "conversion_started"]
    assert sorted(e["variant"] for e in second if e["event"] == "conversion_cached") == ["fp32", "int8"]

    calibration = tmp_path / "digits" / "calib.npy"
    calibration.write_bytes(calibration.read_bytes()[:-64] + bytes(64))  # new calibration data: int8 is redone
    third = events(edgetk("farm", "run", str(farm), "--json").stdout)
    assert [e["variants"] for e in third if e["event"] == "conversion_started"] == [["fp32", "int8"]]
    assert len(list(cache.iterdir())) == 2

    report = edgetk("report", str(tmp_path / "farm.results.db"), "-o", str(tmp_path / "report.json"), "--json")
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    assert {r["variant"] for r in rows} == {"fp32", "int8"}
    # accuracy comes from the converter's report.json beside each model
    assert {r["accuracy_metric"] for r in rows} <= {"task accuracy", "top-1 agreement"}
    assert all(r["accuracy_drop"] is not None for r in rows)


def test_per_job_timeout_is_a_transient_failure_that_is_retried(farm_dir):
    farm = farm_dir / "timeout.yaml"
    farm.write_text(
        "name: timeout\nmodels: [cnn_fp32.tflite]\ntimeout_s: 2\n"
        "settings: {num_runs: 1000000, min_s: 30, max_s: 30, warmup_min_s: 0}\n"
        "retries: {attempts: 2, backoff_s: 0.1}\n"
    )
    proc = edgetk("farm", "run", str(farm), "--json", timeout=300)
    assert proc.returncode == ExitCode.FARM_INCOMPLETE
    stream = events(proc.stdout)
    (retry,) = [e for e in stream if e["event"] == "job_retry"]
    assert retry["error"].startswith("timeout:")
    (finished,) = [e for e in stream if e["event"] == "job_finished"]
    assert finished["status"] == "failed"
    assert finished["attempts"] == 2
    assert finished["transient"] is True
    with open_store(farm_dir / "timeout.results.db") as store:
        assert [a["attempt"] for a in store.attempts()] == [1]  # the retried attempt is in the history


def test_the_in_process_executor_builds_the_runner_before_the_device_threads_start():
    """Eight device threads would otherwise each build runner.pyz on their first job (~1 s of a
    small controller's CPU before any device got its first command; bench_farm)."""
    from toolkit.farm.executors import InProcessExecutor
    from toolkit.runner import pack

    pack._build_cached.cache_clear()
    executor = InProcessExecutor()
    try:
        assert executor.start(["board-1", "board-2"]) == {}
        assert pack._build_cached.cache_info().currsize == 1  # the threads find it built
    finally:
        executor.close()
