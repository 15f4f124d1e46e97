"""The farm file: strict validation with file:line errors and suggestions, defaults, matrix expansion,
stable job keys, and `edgetk farm validate|plan`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.errors import ConfigError, ExitCode
from toolkit.farm.config import load_farm
from toolkit.farm.plan import delegate_request, expand, model_units, select_devices

REPO = Path(__file__).resolve().parents[1]


def write(folder: Path, text: str, name: str = "farm.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def models(tmp_path, tflite_cnn_fp32, tflite_cnn_int8) -> Path:
    shutil.copy(tflite_cnn_fp32, tmp_path / "cnn.fp32.tflite")
    shutil.copy(tflite_cnn_int8, tmp_path / "cnn.int8.tflite")
    return tmp_path


def error_of(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_farm(path)
    return caught.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: [a.tflite]\nmatrx: {}\n", "farm.yaml:2: matrx: unknown key (did you mean 'matrix'?)"),
        (
            "models: [a.tflite]\ndevices:\n  - name: pi\n    uri: ssh://pi@h\n    tag: [x]\n",
            "farm.yaml:5: devices[0].tag: unknown key (did you mean 'tags'?)",
        ),
        (
            "models: [a.tflite]\ndevices:\n  - name: pi\n    uri: ssh://pi@h\n    transport:\n      acept_new_host_key: true\n",
            "farm.yaml:6: devices[0].transport.acept_new_host_key: unknown key (did you mean 'accept_new_host_key'?)",
        ),
        (
            "models: [a.tflite]\nsettings:\n  num_run: 5\n",
            "farm.yaml:3: settings.num_run: unknown key (did you mean 'num_runs'?)",
        ),
        (
            "models: [a.tflite]\nexecutor: dsak\n",
            "farm.yaml:2: executor: 'dsak' is not one of inprocess, dask (did you mean 'dask'?)",
        ),
        (
            "models: [a.tflite]\nmatrix:\n  devices: [locl]\n",
            "farm.yaml:3: matrix.devices[0]: unknown device 'locl' (did you mean 'local'?)",
        ),
        (
            "models: [a.tflite]\ndevices:\n  - {name: pi-1, uri: 'ssh://h', tags: [arm]}\nmatrix:\n  devices: ['tag:amr']\n",
            "farm.yaml:5: matrix.devices[0]: no device has tag 'amr' (did you mean 'tag:arm'?)",
        ),
        (
            "models:\n  - path: a.onnx\n    variants: [int9]\n",
            "farm.yaml:3: models[0].variants: unknown variant 'int9'",
        ),
        ("models: [a.tflite]\nmatrix:\n  threads: [0]\n", "farm.yaml:3: matrix.threads: thread count 0 must be >= 1"),
        (
            "models: [a.tflite]\ndevices:\n  - {name: x, uri: 'adb://S', transport: {type: ssh}}\n",
            "transport type 'ssh' does not match the URI",
        ),
        ("models: [a.tflite]\ndevices:\n  - {name: x, uri: 'ftp://h'}\n", "unknown device scheme 'ftp'"),
        ("models: [a.tflite, b/a.tflite]\n", "farm.yaml:1: models[1].path: name 'a' is used twice"),
        ("models: [a.tflite]\nexecutor: dask\n", "farm.yaml:2: executor: `dask` needs a `dask:` section"),
        ("devices: []\n", "farm.yaml:1: models: required key is missing"),
        ("models: [a.tflite\n", "invalid YAML"),
    ],
)
def test_every_error_names_file_line_and_field(tmp_path, text, expected):
    error = error_of(write(tmp_path, text))
    assert expected in str(error).replace(str(tmp_path) + "/", "")
    assert error.exit_code == ExitCode.CONFIG


def test_three_line_file_defaults_to_the_local_device(models):
    loaded = load_farm(write(models, "models:\n  - cnn.fp32.tflite\n  - cnn.int8.tflite\n"))
    assert loaded.name == "farm"
    assert [d.name for d in loaded.config.devices] == ["local"]
    assert loaded.store_path == models / "farm.results.db"
    jobs = expand(loaded)
    assert [(j.model, j.device, j.delegates, j.threads) for j in jobs] == [
        ("cnn.fp32", "local", None, None),
        ("cnn.int8", "local", None, None),
    ]


def test_matrix_expansion_tags_delegates_threads_and_exclusions(models):
    text = """
name: lab
models:
  - {path: cnn.fp32.tflite, name: fp}
  - {path: cnn.int8.tflite, name: q}
devices:
  - {name: pi-1, uri: "ssh://pi@10.0.0.1", tags: [pi]}
  - {name: pi-2, uri: "ssh://pi@10.0.0.2", tags: [pi], profile: rpi5}
  - {name: phone, uri: "adb://R5CT", transport: {server_port: 5099}}
  - {name: spare, uri: local, enabled: false}
matrix:
  devices: ["tag:pi", phone]
  delegates: [xnnpack, "gpu,xnnpack", [auto]]
  threads: [1, 4]
  exclude:
    - {device: phone, threads: 4}
    - {model: q, delegate: "gpu,xnnpack"}
"""
    loaded = load_farm(write(models, text))
    assert [d.name for d in select_devices(loaded)] == ["pi-1", "pi-2", "phone"]
    assert loaded.config.devices[2].transport.type == "adb"  # filled in from the URI
    jobs = expand(loaded)
    cells = {(j.device, j.model, j.delegates, j.threads) for j in jobs}
    assert ("phone", "fp", ("xnnpack",), 4) not in cells
    assert ("pi-1", "q", ("gpu", "xnnpack"), 1) not in cells
    assert ("pi-2", "fp", ("auto",), 4) in cells
    # pi-1 and pi-2: 2 models x 3 delegates x 2 threads minus q's gpu cells (2) = 10 each; phone: 3 + 2 = 5
    assert len(jobs) == 10 + 10 + 5
    assert len({j.job_id for j in jobs}) == len(jobs)


def test_job_keys_are_stable_and_change_with_what_is_measured(models):
    base = "name: lab\nmodels: [cnn.fp32.tflite]\nmatrix: {threads: [2]}\n"
    first = {j.job_id for j in expand(load_farm(write(models, base)))}
    again = {j.job_id for j in expand(load_farm(write(models, base)))}
    assert first == again
    assert first != {j.job_id for j in expand(load_farm(write(models, base.replace("[2]", "[3]"))))}
    assert first != {j.job_id for j in expand(load_farm(write(models, base + "settings: {num_runs: 7}\n")))}
    assert first != {j.job_id for j in expand(load_farm(write(models, base.replace("lab", "other"))))}
    with (models / "cnn.fp32.tflite").open("ab") as handle:  # new model content: new jobs
        handle.write(b"\0" * 16)
    assert first != {j.job_id for j in expand(load_farm(write(models, base)))}


def test_source_models_need_calibration_for_int8_unless_synthetic(tmp_path):
    (tmp_path / "net.onnx").write_bytes(b"onnx bytes are hashed, not parsed, when planning")
    with pytest.raises(ConfigError, match="int8 need calibration data"):
        model_units(load_farm(write(tmp_path, "models:\n  - {path: net.onnx, variants: [fp32, int8]}\n")))
    units = model_units(load_farm(write(tmp_path, "models: [net.onnx]\n")))
    assert units[0].variants == ("fp32",)  # no calibration found: the default drops int8
    np.savez(tmp_path / "calib.npz", input=np.zeros((4, 1, 8, 8), np.float32))
    units = model_units(load_farm(write(tmp_path, "models: [net.onnx]\n")))
    assert units[0].variants == ("fp32", "int8")
    assert units[0].calibration == tmp_path / "calib.npz"
    before = units[0].identity
    np.savez(tmp_path / "calib.npz", input=np.ones((4, 1, 8, 8), np.float32))
    assert model_units(load_farm(write(tmp_path, "models: [net.onnx]\n")))[0].identity != before  # new calibration


def test_missing_model_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nothere\.tflite: file not found"):
        model_units(load_farm(write(tmp_path, "models: [nothere.tflite]\n")))


def test_delegate_entries():
    assert delegate_request("default") is None
    assert delegate_request("gpu, xnnpack") == ("gpu", "xnnpack")
    assert delegate_request(["auto"]) == ("auto",)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolkit.cli", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_cli_validate_and_plan(models):
    farm = write(models, "name: lab\nmodels: [cnn.fp32.tflite, cnn.int8.tflite]\nmatrix: {threads: [1, 2]}\n")
    proc = _cli("farm", "validate", str(farm))
    assert proc.returncode == 0, proc.stderr
    assert "farm 'lab': 2 model(s)" in proc.stdout
    assert "4 job(s)" in proc.stdout
    proc = _cli("farm", "plan", str(farm), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [j["state"] for j in plan["jobs"]] == ["pending"] * 4
    bad = write(models, "models: [cnn.fp32.tflite]\nretires: {attempts: 2}\n", "bad.yaml")
    proc = _cli("farm", "validate", str(bad))
    assert proc.returncode == ExitCode.CONFIG
    assert f"error: {bad}:2: retires: unknown key (did you mean 'retries'?)" in proc.stderr


def test_example_farm_file_validates(repo_root):
    example = repo_root / "examples" / "farm.yaml"
    if not example.exists():
        pytest.fail("examples/farm.yaml is missing")
    loaded = load_farm(example)
    assert loaded.config.devices


def test_backoff_grows_and_is_capped_and_cooldown_reaches_the_profiler(models):
    from toolkit.farm.config import RetrySpec
    from toolkit.farm.plan import effective_settings

    retry = RetrySpec(attempts=5, backoff_s=1, factor=3, max_backoff_s=5)
    assert [retry.delay(n) for n in (1, 2, 3)] == [1, 3, 5]
    loaded = load_farm(
        write(models, "models: [cnn.fp32.tflite]\ncooldown: {seconds: 1, below_c: 55, max_wait_s: 30}\n")
    )
    settings = effective_settings(loaded)
    assert (settings["cooldown_below_c"], settings["cooldown_max_s"]) == (55, 30)
