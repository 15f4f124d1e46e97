"""End-to-end conversion with the real converters: onnx2tf, TensorFlow Lite, onnxruntime, Keras, torch.

Converted models are shared through session fixtures. TFLite outputs are checked independently of
edgetk's own validation where it matters: the test runs the files through `delegates.open_model`
and compares against onnxruntime itself, and reads the metadata back with the runner's reader.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converters import convert_model
from converters.variants import VARIANTS
from tests.fixtures.onnx_models import LIGHT_MODELS, light_input
from toolkit.errors import BadInputError, ConfigError, ConversionError, ExitCode

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"
VENV_BIN = str(Path(sys.executable).parent)


def run_cli(*args: str, offline: bool = False, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`edgetk convert ...` in a child process (optionally with no network at all)."""
    argv = [sys.executable, "-m", "toolkit.cli", "convert", *args]
    if offline:
        argv = ["unshare", "--net", *argv]
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "")}
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd or REPO, env=env, timeout=900)


def run_python(code: str, cwd: Path) -> None:
    """Build a test model with TensorFlow/torch in a child (keeps this process light)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def reports(out: Path, stem: str) -> dict[str, dict]:
    return {name: json.loads((out / f"{stem}.{name}.report.json").read_text()) for name in VARIANTS}


def accuracy_of(report: dict) -> float:
    return report["accuracy"]["variant"]


# --- the shipped example, all six variants ------------------------------------------------------------


@pytest.fixture(scope="session")
def digits_onnx(tmp_path_factory) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """The `make demo` command line: every variant of the ONNX example through the CLI."""
    out = tmp_path_factory.mktemp("digits_onnx")
    proc = run_cli(
        str(DIGITS / "digits.onnx"),
        "-o",
        str(out),
        "--quant",
        "all",
        "--calib",
        str(DIGITS / "calib.npy"),
        "--eval",
        str(DIGITS / "eval.npz"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, reports(out, "digits"), proc


@pytest.fixture(scope="session")
def digits_keras(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_keras")
    result = convert_model(
        DIGITS / "digits.keras",
        out,
        "all",
        calibration=DIGITS / "calib_nhwc.npy",
        evaluation=DIGITS / "eval_nhwc.npz",
    )
    return out, result


def _check_example_accuracy(by_variant: dict[str, float]) -> None:
    fp32 = by_variant["fp32"]
    assert fp32 > 0.95
    assert abs(by_variant["fp16"] - fp32) <= 0.001
    for name in ("dynamic", "int8", "int8-full", "int16x8"):
        assert abs(by_variant[name] - fp32) <= 0.01, (name, by_variant)


def test_onnx_example_produces_all_six_variants_with_accuracy(digits_onnx):
    out, by_name, proc = digits_onnx
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"digits.{v}.tflite" for v in VARIANTS] + [f"digits.{v}.report.json" for v in VARIANTS]
    )
    _check_example_accuracy({name: accuracy_of(report) for name, report in by_name.items()})
    for report in by_name.values():
        assert report["evaluation"]["samples"] == 360
        assert report["evaluation"]["labels"] is True
        assert report["evaluation"]["held_out"] is False
        assert report["source"]["reference_engine"] == "onnxruntime"
        for key in ("max_abs_error", "mean_abs_error", "cosine", "snr_db", "top1_agreement"):
            assert report["metrics"][key] is not None, key
    # The table for people lists every variant with its accuracy.
    for name in VARIANTS:
        assert f"\n│ {name}" in proc.stdout or f"│ {name} " in proc.stdout
    assert "source model accuracy: 97" in proc.stdout


def test_keras_example_produces_all_six_variants_with_accuracy(digits_keras):
    _out, result = digits_keras
    assert set(result.variants) == set(VARIANTS)
    _check_example_accuracy({name: v.accuracy["variant"] for name, v in result.variants.items()})
    assert result.variants["fp32"].report["source"]["reference_engine"].startswith("tensorflow")
    assert result.inputs[0]["perm"] is None  # a Keras model is NHWC already


def test_int8_is_at_most_30_percent_of_fp32_for_the_example(digits_onnx, digits_keras):
    for out in (digits_onnx[0], digits_keras[0]):
        fp32 = (out / "digits.fp32.tflite").stat().st_size
        for name in ("int8", "int8-full"):
            assert (out / f"digits.{name}.tflite").stat().st_size <= 0.30 * fp32


def test_metadata_is_readable_by_the_runner_and_records_layout(digits_onnx):
    from delegates import open_model, read_metadata

    out, _, _ = digits_onnx
    source_hash = sha256(DIGITS / "digits.onnx")
    for name, spec in VARIANTS.items():
        document = read_metadata(out / f"digits.{name}.tflite")
        assert document["schema"] == "edgetk.metadata/1"
        assert document["variant"] == name
        assert document["source"] == {"format": "onnx", "name": "digits.onnx", "sha256": source_hash}
        assert document["quantization"] == spec.quantization_metadata(True)
        (entry,) = document["inputs"]
        assert entry["source_name"] == "input"
        assert entry["source_shape"] == [1, 1, 8, 8]
        assert entry["shape"] == [1, 8, 8, 1]
        assert entry["perm"] == [0, 2, 3, 1]
        assert (entry["source_layout"], entry["layout"]) == ("NCHW", "NHWC")
        assert entry["dtype"] == ("int8" if name == "int8-full" else "float32")
        assert entry["normalization"] == {"mean": [0.0], "std": [1.0]}
        (output,) = document["outputs"]
        assert output["source_name"] == "logits"
        assert output["source_shape"] == [1, 10]
        if spec.needs_calibration:
            assert document["calibration"]["samples"] == 256
            assert document["calibration"]["synthetic"] is False
        else:
            assert document["calibration"] is None
        assert document["converter"]["tool"] == "onnx2tf"
    # The runner feeds NCHW data using the recorded permutation and gets the ONNX logits back.
    import onnxruntime

    sample = np.load(DIGITS / "eval.npz")["input"][:1]
    expected = onnxruntime.InferenceSession(str(DIGITS / "digits.onnx")).run(None, {"input": sample})[0]
    got = open_model(out / "digits.fp32.tflite").invoke({"input": sample})["logits"]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_json_report_beside_each_model(digits_onnx):
    out, by_name, _ = digits_onnx
    int8 = by_name["int8"]
    assert int8["model"]["path"] == "digits.int8.tflite"
    assert int8["size"]["fp32_model_bytes"] > int8["size"]["model_bytes"]
    assert int8["size"]["bytes"] == (out / "digits.int8.tflite").stat().st_size
    assert 0 < int8["size"]["ratio_to_fp32"] <= 0.30
    assert int8["calibration"]["source"].endswith("calib.npy")
    assert by_name["fp32"]["size"]["ratio_to_fp32"] == 1.0
    assert by_name["fp32"]["metrics"]["cosine"] > 0.99999


# --- more sources ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def digits_tf_sources(tmp_path_factory) -> dict[str, Path]:
    """The Keras example re-saved as a SavedModel folder and as a Keras 3 HDF5 file."""
    folder = tmp_path_factory.mktemp("tf_sources")
    run_python(
        "import keras\n"
        f"model = keras.saving.load_model({str(DIGITS / 'digits.keras')!r}, compile=False)\n"
        "model.export('digits_savedmodel', format='tf_saved_model')\n"
        "model.save('digits.h5')\n",
        folder,
    )
    return {"savedmodel": folder / "digits_savedmodel", "keras-h5": folder / "digits.h5"}


def test_savedmodel_source(digits_tf_sources, tmp_path):
    result = convert_model(
        digits_tf_sources["savedmodel"],
        tmp_path,
        ["fp32", "int8"],
        calibration=DIGITS / "calib_nhwc.npy",
        evaluation=DIGITS / "eval_nhwc.npz",
    )
    assert result.format == "savedmodel"
    fp32, int8 = result.variants["fp32"], result.variants["int8"]
    assert fp32.metrics["cosine"] > 0.99999
    assert abs(int8.accuracy["variant"] - fp32.accuracy["variant"]) <= 0.01
    assert (tmp_path / "digits_savedmodel.int8.tflite").is_file()


def test_keras_h5_source(digits_tf_sources, tmp_path):
    result = convert_model(digits_tf_sources["keras-h5"], tmp_path, ["fp32"], evaluation=DIGITS / "eval_nhwc.npz")
    assert result.format == "keras-h5"
    assert result.variants["fp32"].accuracy["variant"] > 0.95


def test_external_data_onnx_is_converted_and_left_untouched(tmp_path):
    import onnx

    folder = tmp_path / "model"
    folder.mkdir()
    model = onnx.load(str(DIGITS / "digits.onnx"))
    onnx.save_model(
        model, str(folder / "digits.onnx"), save_as_external_data=True, location="weights.bin", size_threshold=0
    )
    assert (folder / "weights.bin").stat().st_size > 100_000
    before = {p.name: sha256(p) for p in folder.iterdir()}
    result = convert_model(folder / "digits.onnx", tmp_path / "out", ["fp32"], evaluation=DIGITS / "eval.npz")
    assert result.variants["fp32"].metrics["cosine"] > 0.99999
    assert result.variants["fp32"].accuracy["variant"] > 0.95
    # onnx2tf rewrites the file it converts; edgetk gives it a copy.
    assert {p.name: sha256(p) for p in folder.iterdir()} == before


def test_torch_module_through_the_python_api(tmp_path):
    torch = pytest.importorskip("torch")
    from converters import convert_torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    )
    calib = torch.rand(40, 3, 24, 24)
    result = convert_torch(module, torch.zeros(1, 3, 24, 24), tmp_path, ["fp32", "int8"], calibration=calib)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.fp32.report.json",
        "model.fp32.tflite",
        "model.int8.report.json",
        "model.int8.tflite",
        "model.onnx",
    ]
    assert result.source == tmp_path / "model.onnx"
    assert result.inputs[0]["perm"] == [0, 2, 3, 1]
    assert result.evaluation["held_out"] is True
    assert result.evaluation["samples"] == 8
    assert result.variants["fp32"].metrics["cosine"] > 0.99999
    assert result.variants["int8"].metrics["cosine"] > 0.99
    with torch.no_grad():
        expected = module(calib[:1]).numpy()
    from delegates import open_model

    got = open_model(result.variants["fp32"].tflite_path).invoke({"input": calib[:1].numpy()})
    np.testing.assert_allclose(next(iter(got.values())), expected, atol=1e-4)


@pytest.fixture(scope="session")
def two_input_onnx(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("two_inputs")
    run_python(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)\n"
        "        self.fc = torch.nn.Linear(6 + 5, 4)\n"
        "    def forward(self, image, meta):\n"
        "        pooled = torch.relu(self.conv(image)).mean(dim=(2, 3))\n"
        "        return self.fc(torch.cat([pooled, meta], dim=1))\n"
        "torch.manual_seed(0)\n"
        "torch.onnx.export(Net().eval(), (torch.zeros(1, 3, 16, 16), torch.zeros(1, 5)), 'two.onnx',\n"
        "    input_names=['image', 'meta'], output_names=['scores'], opset_version=17, dynamo=False)\n",
        folder,
    )
    return folder / "two.onnx"


def test_multi_input_npz_keyed_by_input_name(two_input_onnx, tmp_path):
    rng = np.random.default_rng(0)
    calib = tmp_path / "calib.npz"
    np.savez(calib, meta=rng.random((30, 5), dtype=np.float32), image=rng.random((30, 3, 16, 16), dtype=np.float32))
    proc = run_cli(
        str(two_input_onnx), "-o", str(tmp_path / "out"), "--quant", "fp32,int8", "--calib", str(calib), "--json"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    perms = {entry["source_name"]: entry["perm"] for entry in result["inputs"]}
    assert perms == {"image": [0, 2, 3, 1], "meta": None}
    assert result["variants"]["fp32"]["metrics"]["cosine"] > 0.99999
    assert result["variants"]["int8"]["metrics"]["cosine"] > 0.99
    assert result["evaluation"]["held_out"] is True


def test_image_folder_calibration_with_yaml_recipe(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    pixels = np.load(DIGITS / "calib.npy")[:100, 0]  # [0, 1] floats -> 8-bit grey images
    for index, image in enumerate(pixels):
        Image.fromarray(np.round(image * 255).astype(np.uint8), "L").save(images / f"{index:03d}.png")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("channel_order: GRAY\nscale: 255\nmean: [0.0]\nstd: [1.0]\nlayout: NCHW\n")
    out = tmp_path / "out"
    proc = run_cli(
        str(DIGITS / "digits.onnx"),
        "-o",
        str(out),
        "--quant",
        "fp32,int8",
        "--calib",
        str(images),
        "--recipe",
        str(recipe),
        "--eval",
        str(DIGITS / "eval.npz"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    int8, fp32 = result["variants"]["int8"], result["variants"]["fp32"]
    assert abs(int8["accuracy"]["variant"] - fp32["accuracy"]["variant"]) <= 0.01
    calibration = int8["calibration"]
    assert calibration["samples"] == 100
    assert calibration["synthetic"] is False
    assert calibration["preprocessing"]["channel_order"] == "GRAY"
    from delegates import read_metadata

    entry = read_metadata(out / "digits.int8.tflite")["inputs"][0]
    assert entry["normalization"] == {"mean": [0.0], "std": [255.0]}  # x = (pixel - 0) / 255


# --- failures: clear errors, nothing half-written ------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG image"),
        (b"\x08\x07" + bytes(50), "corrupt"),
    ],
    ids=["empty", "wrong-format", "corrupt"],
)
def test_bad_model_file_exits_3_and_writes_nothing(tmp_path, content, message):
    model = tmp_path / "model.onnx"
    model.write_bytes(content)
    out = tmp_path / "out"
    proc = run_cli(str(model), "-o", str(out), "--quant", "fp32")
    assert proc.returncode == ExitCode.BAD_INPUT
    assert message in proc.stderr
    assert "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_int8_without_calibration_is_an_error_with_a_hint(tmp_path):
    proc = run_cli(str(DIGITS / "digits.onnx"), "-o", str(tmp_path / "out"), "--quant", "fp32,int8")
    assert proc.returncode == ExitCode.CONFIG
    assert "int8 need(s) calibration data" in proc.stderr
    assert "--calib" in proc.stderr
    assert "--synthetic-calibration" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_failure_late_in_the_run_leaves_no_partial_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")

    class Interrupted(Exception):
        pass

    def fail_while_validating(step: str) -> None:
        # By now every variant file is written and carries metadata, inside the temporary folder.
        if step.startswith("validating int8"):
            raise Interrupted(step)

    with pytest.raises(Interrupted):
        convert_model(
            DIGITS / "digits.onnx",
            out,
            ["fp32", "int8"],
            calibration=DIGITS / "calib.npy",
            progress=fail_while_validating,
        )
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_timeout_stops_the_worker_and_leaves_nothing(tmp_path):
    with pytest.raises(ConversionError, match="did not finish within 1 s"):
        convert_model(DIGITS / "digits.onnx", tmp_path / "out", ["fp32"], timeout=1)
    assert not (tmp_path / "out").exists()


def test_unsupported_onnx_operator_is_named_with_its_node(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    def model_with(op: str, extra_inputs: list[str], path: Path) -> Path:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
        nodes = [
            helper.make_node("Relu", ["x"], ["r"], name="relu0"),
            helper.make_node(op, ["r", *extra_inputs], ["y"], name="odd_node"),
        ]
        init = [helper.make_tensor("like", TensorProto.FLOAT, [1], [1.0])] if extra_inputs else []
        model = helper.make_model(
            helper.make_graph(nodes, "g", [x], [y], init), opset_imports=[helper.make_opsetid("", 17)]
        )
        model.ir_version = 8
        onnx.save(model, str(path))
        return path

    # onnx2tf has no CastLike; TFLite has no builtin Asin (onnx2tf maps it to a Flex op).
    with pytest.raises(ConversionError) as info:
        convert_model(model_with("CastLike", ["like"], tmp_path / "castlike.onnx"), tmp_path / "a")
    assert "CastLike (node 'odd_node')" in info.value.message
    assert info.value.exit_code == ExitCode.CONVERSION
    with pytest.raises(ConversionError) as info:
        convert_model(model_with("Asin", [], tmp_path / "asin.onnx"), tmp_path / "b")
    assert "Asin (node 'odd_node')" in info.value.message
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()


def test_calibration_data_of_the_wrong_layout_is_bad_input(tmp_path):
    with pytest.raises(BadInputError) as info:
        convert_model(DIGITS / "digits.onnx", tmp_path / "out", ["int8"], calibration=DIGITS / "calib_nhwc.npy")
    assert "looks NHWC" in info.value.hint
    assert not (tmp_path / "out").exists()


def test_typo_in_recipe_is_a_config_error(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("scale: 255\nmeans: [0.5]\n")
    with pytest.raises(ConfigError, match=r"recipe.yaml:2: means: unknown key \(did you mean 'mean'\?\)"):
        convert_model(DIGITS / "digits.onnx", tmp_path / "out", ["fp32"], recipe=recipe)


# --- offline ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rgb_onnx(tmp_path_factory) -> Path:
    """A 3-channel image model: exactly the kind for which onnx2tf downloads sample images."""
    folder = tmp_path_factory.mktemp("rgb")
    run_python(
        "import torch\n"
        "torch.manual_seed(0)\n"
        "m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),\n"
        "    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()\n"
        "torch.onnx.export(m, (torch.zeros(1, 3, 32, 32),), 'rgb.onnx', input_names=['input'],\n"
        "    output_names=['logits'], opset_version=17, dynamo=False)\n",
        folder,
    )
    return folder / "rgb.onnx"


def _network_is_unavailable_under_unshare() -> bool:
    probe = "import socket; s = socket.socket(); s.settimeout(2); print(s.connect_ex(('1.1.1.1', 443)))"
    proc = subprocess.run(["unshare", "--net", sys.executable, "-c", probe], capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() not in ("", "0")


@pytest.mark.slow
def test_conversion_succeeds_without_network(rgb_onnx, tmp_path):
    if not _network_is_unavailable_under_unshare():
        pytest.skip("unshare --net is not available here (needs root or user namespaces)")
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((24, 3, 32, 32), dtype=np.float32))
    # Control: onnx2tf itself needs the network for this model (it fetches sample images).
    control = subprocess.run(
        ["unshare", "--net", str(Path(VENV_BIN) / "onnx2tf"), "-i", str(rgb_onnx), "-o", "o", "-n"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"]},
    )
    assert control.returncode != 0
    assert "connect" in (control.stdout + control.stderr).lower()
    proc = run_cli(
        str(rgb_onnx),
        "-o",
        str(tmp_path / "out"),
        "--quant",
        "fp32,int8",
        "--calib",
        str(calib),
        "--json",
        offline=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["variants"]["int8"]["metrics"]["cosine"] > 0.99
    assert result["variants"]["int8"]["calibration"]["samples"] == 19  # 24 minus the 5 held out


# --- real architectures ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_real_architectures_convert_with_parity(name, light_models, tmp_path):
    import onnxruntime

    from delegates import open_model

    source = light_models[name]
    before = sha256(source)
    session = onnxruntime.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    calib = light_input(tuple(feed.shape), seed=11, count=24)
    tests = light_input(tuple(feed.shape), seed=12, count=6)
    result = convert_model(
        source, tmp_path, ["fp32", "int8"], calibration=calib, evaluation={feed.name: tests}, eval_samples=6
    )
    assert sha256(source) == before
    # Independent check: run the files through the runner and compare with onnxruntime directly.
    expected = np.concatenate([session.run(None, {feed.name: x[None]})[0] for x in tests])
    outputs = {}
    for variant in ("fp32", "int8"):
        runner = open_model(result.variants[variant].tflite_path)
        outputs[variant] = np.concatenate([next(iter(runner.invoke({feed.name: x[None]}).values())) for x in tests])
    assert cosine(outputs["fp32"], expected) >= 0.9999
    assert cosine(outputs["int8"], expected) >= 0.99
    # The input-dependent part of the logits is reproduced too, not only their average (a constant
    # int8 output, e.g. from a broken activation range, can still score a high plain cosine).
    centered = expected - expected.mean(axis=0)
    assert cosine(outputs["fp32"] - outputs["fp32"].mean(axis=0), centered) >= 0.999
    assert cosine(outputs["int8"] - outputs["int8"].mean(axis=0), centered) >= 0.6
    assert result.variants["fp32"].metrics["cosine"] >= 0.9999
    assert result.variants["int8"].metrics["cosine"] >= 0.99


@pytest.mark.slow
def test_mobilenet_v2_int8_is_at_most_30_percent_of_fp32(tmp_path):
    run_python(
        "import keras\n"
        "keras.utils.set_random_seed(0)\n"
        "keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3)).save('mobilenet_v2.keras')\n",
        tmp_path,
    )
    proc = run_cli(
        str(tmp_path / "mobilenet_v2.keras"),
        "-o",
        str(tmp_path / "out"),
        "--quant",
        "fp32,int8",
        "--synthetic-calibration",
        "--calib-samples",
        "16",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    int8 = result["variants"]["int8"]
    assert int8["size"]["ratio_to_fp32"] <= 0.30
    assert int8["size"]["fp32_model_bytes"] > 10_000_000  # 3.5 M parameters
    assert int8["calibration"]["synthetic"] is True
    assert "synthetic" in result["evaluation"]["source"] or "random" in result["evaluation"]["source"]


def test_inspect_on_the_converted_example_lists_operators_and_fallbacks(digits_onnx):
    """Issue 3's acceptance on the shipped example: operators and predicted GPU/NNAPI/Edge TPU fallbacks."""
    out, _reports, _proc = digits_onnx
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "inspect", str(out / "digits.int8.tflite"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(proc.stdout)
    assert report["variant"] == "int8"
    assert report["metadata"]["source"]["name"] == "digits.onnx"
    ops = {row["op"] for row in report["operators"]}
    assert {"CONV_2D", "FULLY_CONNECTED", "QUANTIZE", "DEQUANTIZE"} <= ops
    predictions = report["predictions"]
    assert set(predictions) >= {"gpu", "nnapi", "edgetpu"}
    for name in ("gpu", "nnapi", "edgetpu"):
        assert predictions[name]["total_nodes"] == report["node_count"]
    # Not compiled for the Edge TPU: the float<->int8 edges stay on the CPU.
    assert {op["op"] for op in predictions["edgetpu"]["cpu_ops"]} >= {"QUANTIZE", "DEQUANTIZE"}
    assert all(op["reason"] for op in predictions["edgetpu"]["cpu_ops"])
    assert predictions["edgetpu"]["supported_nodes"] < report["node_count"]
