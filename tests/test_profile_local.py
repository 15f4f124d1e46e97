"""`profile_model` end to end on the local device: the real runner.pyz in a child process, real TFLite.

The "device Python" is swapped for real interpreters and wrappers to reach the failure paths: a
Python without a TFLite runtime, one where TensorFlow/onnx/click/pydantic/yaml/rich cannot be
imported, one whose measurement process segfaults, one that sees a Raspberry-Pi-like sysfs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.errors import (
    BadInputError,
    CommandTimeoutError,
    DelegateError,
    DeviceSetupError,
    ExitCode,
    RunnerCrashedError,
)
from toolkit.profile import ProfileRequest, profile_model
from toolkit.results import BenchmarkSettings, validate_result

QUICK = BenchmarkSettings(warmup_runs=2, warmup_min_s=0.0, num_runs=30, min_s=0.0, max_s=20.0)


@pytest.fixture
def local(tmp_path):
    """An open local transport with its own work folder, whose uploads are recorded."""
    from toolkit.transports import open_transport

    transport = open_transport("local", {"workdir": str(tmp_path / "device")})
    transport.uploads = []
    push = transport.push

    def recording_push(local_path, remote):
        transport.uploads.append(remote)
        push(local_path, remote)

    transport.push = recording_push
    yield transport
    transport.close()


def _profile(model, transport, **kwargs):
    kwargs.setdefault("settings", QUICK)
    return profile_model(ProfileRequest(model, **kwargs), transport)


def _script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _wrapper(tmp_path: Path, name: str, sitecustomize: str) -> str:
    """A device Python: our venv's interpreter with a sitecustomize that every runner process loads."""
    site = tmp_path / f"{name}-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(sitecustomize))
    return _script(
        tmp_path / f"{name}-python",
        f'#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} "$@"\n',
    )


def test_profile_float_model_gives_a_complete_valid_result(tflite_cnn_fp32, local):
    result = _profile(tflite_cnn_fp32, local)
    validate_result(result)
    timings = result["timings"]
    assert timings["count"] == len(timings["samples"]) >= 30
    assert timings["stop_reason"] in ("count", "min_seconds")
    assert timings["min"] <= timings["p50"] <= timings["p90"] <= timings["p99"] <= timings["max"]
    assert timings["p50"] == pytest.approx(float(np.percentile(timings["samples"], 50)))
    assert timings["init"] > 0
    assert timings["first"] > 0
    assert timings["warmup_runs"] >= 2
    assert result["config"]["delegate"] == "xnnpack"
    assert result["config"]["delegate_request"] == ["xnnpack"]
    assert result["selection"]["chosen"] == "xnnpack"
    assert result["delegation"]["delegated_nodes"] == result["delegation"]["total_nodes"] > 0
    assert result["parity"]["cosine"] > 0.9999
    assert result["parity"]["max_abs_error"] < 1e-4
    memory = result["memory"]
    assert memory["source"] == "vmhwm"
    assert memory["peak_rss_bytes"] >= memory["baseline_rss_bytes"] > 0
    fingerprint = result["device"]["fingerprint"]
    assert fingerprint["runtime"]["name"] == "ai_edge_litert"
    assert fingerprint["python"] == ".".join(map(str, sys.version_info[:3]))
    assert fingerprint["numpy"] == np.__version__
    assert fingerprint["cpu_count"] == os.cpu_count()
    assert result["model"]["size_bytes"] == Path(tflite_cnn_fp32).stat().st_size
    assert result["device"]["transport"] == "local"


def test_runner_and_model_are_cached_by_hash_and_run_folders_removed(tflite_cnn_fp32, tflite_cnn_int8, local):
    _profile(tflite_cnn_fp32, local)
    first_uploads = list(local.uploads)
    assert len(first_uploads) == 2
    assert any(p.endswith(".pyz") for p in first_uploads)
    _profile(tflite_cnn_fp32, local)
    assert local.uploads == first_uploads  # nothing uploaded the second time
    _profile(tflite_cnn_int8, local)
    assert len(local.uploads) == 3  # only the new model
    runs = Path(local.workdir) / "runs"
    assert list(runs.iterdir()) == []


def test_a_reused_transport_skips_the_setup_check_and_survives_a_cleared_cache(tflite_cnn_fp32, tflite_cnn_int8, local):
    runs = []
    run = local.run
    local.run = lambda argv, **kw: (runs.append(list(argv)), run(argv, **kw))[1]
    _profile(tflite_cnn_fp32, local)
    assert sum("-c" in argv for argv in runs) == 1  # the setup probe
    runs.clear()
    _profile(tflite_cnn_fp32, local)
    assert len(runs) == 1  # known device, everything cached: one command, the runner
    runs.clear()
    _profile(tflite_cnn_int8, local)  # a new model on a known device: no second start of its Python to probe
    assert [argv[0] for argv in runs] == ["sh", sys.executable]  # folders + what exists, then the runner
    assert local.uploads[-1].endswith("cnn_int8.tflite")
    shutil.rmtree(Path(local.workdir) / "models")  # someone cleans the device's cache
    result = _profile(tflite_cnn_fp32, local)
    assert result["timings"]["count"] >= 30
    assert local.uploads[-1].endswith("cnn_fp32.tflite")  # uploaded again
    (pyz,) = (Path(local.workdir) / "runner").iterdir()
    pyz.unlink()
    _profile(tflite_cnn_fp32, local)
    assert local.uploads[-1] == str(pyz)


def test_inputs_file_in_the_source_layout(tflite_cnn_fp32_nchw, local, tmp_path):
    """The NCHW-metadata model takes [1,3,32,32] inputs; the runner transposes them."""
    good = tmp_path / "inputs.npy"
    np.save(good, np.random.default_rng(3).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32))
    result = _profile(tflite_cnn_fp32_nchw, local, inputs=good)
    assert result["config"]["inputs"] == "inputs.npy"
    assert result["parity"]["outputs"][0]["shape"] == [1, 10]
    wrong = tmp_path / "nhwc.npy"
    np.save(wrong, np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(BadInputError, match="shape"):
        _profile(tflite_cnn_fp32_nchw, local, inputs=wrong)


def test_tflite_runtime_on_an_int8_model_warns_about_xnnpack(tflite_cnn_int8, local):
    result = _profile(tflite_cnn_int8, local, runtime="tflite_runtime")
    assert result["device"]["fingerprint"]["runtime"]["name"] == "tflite_runtime"
    assert any("XNNPACK" in w for w in result["warnings"])
    assert result["parity"]["cosine"] > 0.99


def test_adaptive_mode_says_why_it_stopped(tflite_cnn_fp32, local):
    settings = BenchmarkSettings(warmup_min_s=0.0, adaptive=True, target_ci=0.05, max_s=20.0)
    timings = _profile(tflite_cnn_fp32, local, settings=settings)["timings"]
    assert timings["stop_reason"] in ("converged", "max_seconds")
    if timings["stop_reason"] == "converged":
        assert timings["ci95_rel"] <= 0.05


def test_a_model_with_an_unresolved_custom_op_is_refused_with_the_op_name(tflite_custom_op, local):
    with pytest.raises((BadInputError, DelegateError)) as excinfo:
        _profile(tflite_custom_op, local, delegates=("cpu",))
    assert "EdgetkTestOp" in excinfo.value.message
    assert Path(tflite_custom_op).name in excinfo.value.message  # the user's file name, not a hash
    assert not excinfo.value.transient


@pytest.mark.parametrize("name", ["tflite_truncated", "tflite_corrupt"])
def test_a_damaged_model_is_refused_without_crashing(name, request, local):
    with pytest.raises(BadInputError):
        _profile(request.getfixturevalue(name), local)


def test_missing_model_file_is_a_bad_input(tmp_path, local):
    with pytest.raises(BadInputError, match="no such model"):
        _profile(tmp_path / "nope.tflite", local)


def test_model_file_is_parsed_once_until_the_file_changes(
    tflite_cnn_fp32_nchw, tflite_cnn_int8_io_nchw, tflite_corrupt, tmp_path, monkeypatch
):
    import delegates.metadata
    from toolkit.profile import model_file

    parses = []
    real = delegates.metadata.read_metadata
    monkeypatch.setattr(delegates.metadata, "read_metadata", lambda source: parses.append(source) or real(source))
    path = tmp_path / "model.tflite"
    shutil.copyfile(tflite_cnn_fp32_nchw, path)
    first, again = model_file(path), model_file(path)
    assert len(parses) == 1
    assert first == again
    assert first.metadata  # the converter's metadata, which callers must not be able to spoil for each other
    again.metadata.clear()
    assert model_file(path).metadata == first.metadata
    shutil.copyfile(tflite_cnn_int8_io_nchw, path)
    os.utime(path, ns=(1, 1))  # another file in place, whatever the clock's resolution
    replaced = model_file(path)
    assert len(parses) == 2
    assert (replaced.sha256, replaced.size) != (first.sha256, first.size)
    shutil.copyfile(tflite_corrupt, path)
    with pytest.raises(BadInputError, match=r"not a valid \.tflite"):
        model_file(path)


@pytest.fixture(scope="module")
def numpy_only_python(tmp_path_factory) -> str:
    """A real Python with numpy but no TFLite runtime."""
    venv = tmp_path_factory.mktemp("numpy-only") / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output([python, "-c", "import site; print(site.getsitepackages()[0])"], text=True).strip()
    )
    shelf = venv / "numpy-shelf"
    shelf.mkdir()
    (shelf / "numpy").symlink_to(Path(np.__file__).parent)
    (site / "numpy-shelf.pth").write_text(f"{shelf}\n")
    return str(python)


def test_device_without_a_tflite_runtime_gets_the_pip_command(tflite_cnn_fp32, local, numpy_only_python):
    with pytest.raises(DeviceSetupError) as excinfo:
        _profile(tflite_cnn_fp32, local, python=numpy_only_python)
    assert "no TFLite runtime" in excinfo.value.message
    assert f"{numpy_only_python} -m pip install ai-edge-litert" in excinfo.value.hint
    assert excinfo.value.exit_code == ExitCode.DEVICE_SETUP
    assert local.uploads == []  # refused before copying anything


def test_device_without_python_is_a_setup_error(tflite_cnn_fp32, local, tmp_path):
    with pytest.raises(DeviceSetupError, match="no Python"):
        _profile(tflite_cnn_fp32, local, python=str(tmp_path / "no-such-python3"))


BLOCKER = """
import sys
BLOCKED = {"tensorflow", "onnx", "onnxruntime", "onnx2tf", "torch", "click", "pydantic", "yaml", "rich"}
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(LOG, "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{name} is blocked on this device")
        return None
sys.meta_path.insert(0, Blocker())
"""


def test_runner_needs_none_of_the_workstation_packages(tflite_cnn_fp32, local, tmp_path):
    log = tmp_path / "blocked.log"
    python = _wrapper(tmp_path, "blocked", BLOCKER.replace("LOG", repr(str(log))))
    result = _profile(tflite_cnn_fp32, local, python=python)
    validate_result(result)
    assert result["timings"]["count"] >= 30
    attempted = log.read_text().split() if log.exists() else []
    assert attempted == [], f"the runner tried to import {attempted}"


SEGFAULT_IN_MEASURE = """
import ctypes, sys
class SegfaultOnMeasure:
    # The measuring process (forked or spawned) imports the measurement module; the supervisor never does.
    def find_spec(self, name, path=None, target=None):
        if name == "toolkit.runner.measure":
            ctypes.string_at(0)
        return None
sys.meta_path.insert(0, SegfaultOnMeasure())
"""


def test_a_segfault_in_the_runner_is_reported_with_its_signal(tflite_cnn_fp32, local, tmp_path):
    python = _wrapper(tmp_path, "crashing", SEGFAULT_IN_MEASURE)
    with pytest.raises(RunnerCrashedError) as excinfo:
        _profile(tflite_cnn_fp32, local, python=python)
    assert excinfo.value.details["signal_name"] == "SIGSEGV"
    assert "SIGSEGV" in excinfo.value.message
    assert list((Path(local.workdir) / "runs").iterdir()) == []


def test_a_measurement_over_its_timeout_is_stopped_on_the_device(tflite_cnn_fp32, local):
    settings = BenchmarkSettings(warmup_min_s=0.0, min_s=60.0, max_s=60.0)
    with pytest.raises(CommandTimeoutError) as excinfo:
        _profile(tflite_cnn_fp32, local, settings=settings, timeout_s=3)
    assert excinfo.value.transient
    assert list((Path(local.workdir) / "runs").iterdir()) == []


# --- thermal: the runner sees a Raspberry-Pi-like sysfs bind-mounted over /sys ---------------------

needs_mount_namespace = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare for a private mount namespace"
)


def _sysfs_python(tmp_path: Path, temp_millic: int) -> tuple[str, Path]:
    from tests.test_runner_parts import PI5_CPUS, make_sysfs

    root = make_sysfs(tmp_path / "sysfs", [("cpu-thermal", temp_millic), ("gpu-thermal", 40000)], PI5_CPUS)
    mounts = (
        f"mount --bind {root}/sys/class/thermal /sys/class/thermal && "
        f"mount --bind {root}/sys/devices/system/cpu /sys/devices/system/cpu && "
        f'exec {sys.executable} "$@"'
    )
    script = f"#!/bin/sh\nexec unshare -m sh -c '{mounts}' sh \"$@\"\n"
    return _script(tmp_path / "pi-python", script), root


@needs_mount_namespace
def test_thermal_zones_and_clocks_are_recorded_before_and_after(tflite_cnn_fp32, local, tmp_path):
    python, _ = _sysfs_python(tmp_path, 48500)
    result = _profile(tflite_cnn_fp32, local, python=python)
    thermal = result["thermal"]
    assert thermal["before_c"] == {"cpu-thermal": 48.5, "gpu-thermal": 40.0}
    assert thermal["after_c"] == thermal["before_c"]
    assert thermal["cpu_khz_before"] == {f"cpu{i}": 2400000 for i in range(4)}
    assert thermal["clocks_changed"] is False
    assert thermal["cooldown_waited_s"] is None


@needs_mount_namespace
def test_cooldown_waits_for_the_profile_zone_and_is_bounded(tflite_cnn_fp32, local, tmp_path):
    python, _ = _sysfs_python(tmp_path, 75000)
    profile = tmp_path / "pi.yaml"
    profile.write_text(
        f"name: pi-test\nos: linux\nabi: aarch64\nthermal_zones: [cpu-thermal]\nrunner: {{python: {python}}}\n"
    )
    hot = BenchmarkSettings(**{**QUICK.model_dump(), "cooldown_below_c": 70.0, "cooldown_max_s": 2.0})
    result = _profile(tflite_cnn_fp32, local, python=python, profile=str(profile), settings=hot)
    assert result["thermal"]["before_c"] == {"cpu-thermal": 75.0}  # only the profile's zone
    assert result["thermal"]["cooldown_waited_s"] >= 2.0
    assert any("cooldown limit" in w for w in result["warnings"])
    cool = BenchmarkSettings(**{**QUICK.model_dump(), "cooldown_below_c": 80.0, "cooldown_max_s": 2.0})
    result = _profile(tflite_cnn_fp32, local, python=python, profile=str(profile), settings=cool)
    assert result["thermal"]["cooldown_waited_s"] < 2.0
    assert not any("cooldown" in w for w in result["warnings"])


# --- the command ---------------------------------------------------------------------------------------


def _cli(args: list[str], tmp_path: Path):
    from toolkit.cli import main

    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    return CliRunner().invoke(main, args, env=env)


def test_cli_json_and_output_file_hold_the_same_result(tflite_cnn_fp32, tmp_path):
    out = tmp_path / "results" / "r.json"
    quick = ["--runs", "20", "--min-secs", "0", "--warmup-secs", "0"]
    result = _cli(["profile", str(tflite_cnn_fp32), "--json", "-o", str(out), *quick], tmp_path)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert json.loads(out.read_text()) == printed
    validate_result(printed)
    assert Path(tmp_path / "cache" / "edgetk" / "local").is_dir()


def test_cli_table_shows_the_figures(tflite_cnn_fp32, tmp_path):
    quick = ["--runs", "20", "--min-secs", "0", "--warmup-secs", "0", "--delegate", "cpu", "--threads", "1"]
    result = _cli(["profile", str(tflite_cnn_fp32), *quick], tmp_path)
    assert result.exit_code == 0, result.output
    for label in ("p50 / p90 / p99", "first inference", "peak memory", "parity", "thermal", "cpu (asked: cpu"):
        assert label in result.stdout
    assert "1" in result.stdout


def test_cli_profiles_several_models_side_by_side(tflite_cnn_fp32, tflite_cnn_int8, tmp_path):
    quick = ["--runs", "20", "--min-secs", "0", "--warmup-secs", "0"]
    out = tmp_path / "both.json"
    result = _cli(["profile", str(tflite_cnn_fp32), str(tflite_cnn_int8), "--json", "-o", str(out), *quick], tmp_path)
    assert result.exit_code == 0, result.output
    documents = json.loads(result.stdout)
    assert [d["model"]["name"] for d in documents] == [Path(tflite_cnn_fp32).name, Path(tflite_cnn_int8).name]
    assert json.loads(out.read_text()) == documents
    table = _cli(["profile", str(tflite_cnn_fp32), str(tflite_cnn_int8), *quick], tmp_path)
    assert table.exit_code == 0, table.output
    header = next(line for line in table.stdout.splitlines() if "cnn_fp32.tflite" in line)
    assert "cnn_int8.tflite" in header
    assert "via vmhwm" in table.stdout


def test_cli_errors_have_their_exit_codes(tflite_corrupt, tmp_path):
    result = _cli(["profile", str(tflite_corrupt)], tmp_path)
    assert result.exit_code == ExitCode.BAD_INPUT
    assert result.output.startswith("error: ") or "error: " in result.output
    result = _cli(["profile", str(tflite_corrupt), "--ssh-config", __file__], tmp_path)
    assert result.exit_code == ExitCode.CONFIG
    assert "--ssh-config cannot be used with a local device" in result.output
    result = _cli(["profile", str(tflite_corrupt), "--delegate-option", "a=b"], tmp_path)
    assert result.exit_code == ExitCode.CONFIG
