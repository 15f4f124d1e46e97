"""Conversion building blocks that need no TensorFlow: formats, variants, data binding, layouts."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from converters import layout
from converters.calibration import (
    DataRef,
    ImageRecipe,
    InputSpec,
    describe_data,
    guess_layout,
    load_recipe,
    load_samples,
    split_holdout,
    synthetic_samples,
)
from converters.sources import detect_format
from converters.variants import VARIANTS, parse_variants
from toolkit.errors import BadInputError, ConfigError, ExitCode

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "digits"
IMAGE = InputSpec("input", (1, 1, 8, 8))


# --- variants ------------------------------------------------------------------------------------


def test_variant_names_are_the_documented_ones():
    assert list(VARIANTS) == ["fp32", "fp16", "dynamic", "int8", "int8-full", "int16x8"]


def test_parse_variants_accepts_lists_groups_and_keeps_registry_order():
    assert parse_variants("int8,fp32") == ["fp32", "int8"]
    assert parse_variants("all") == list(VARIANTS)
    assert parse_variants(["float", "int16x8"]) == ["fp32", "fp16", "int16x8"]


def test_unknown_variant_is_a_config_error_listing_choices():
    with pytest.raises(ConfigError) as info:
        parse_variants("fp32,int4")
    assert "int4" in info.value.message
    assert "int16x8" in info.value.hint


def test_quantization_metadata_per_variant():
    assert VARIANTS["int8-full"].quantization_metadata(True) == {
        "weights": "int8",
        "activations": "int8",
        "io_dtype": "int8",
        "per_channel": True,
    }
    assert VARIANTS["fp16"].quantization_metadata(True)["per_channel"] is False
    assert VARIANTS["int16x8"].quantization_metadata(False)["activations"] == "int16"


# --- source formats: by content, not by name -------------------------------------------------------


def test_formats_are_recognised_by_content(tmp_path):
    renamed = tmp_path / "model.bin"
    renamed.write_bytes((DIGITS / "digits.onnx").read_bytes())
    assert detect_format(DIGITS / "digits.onnx").name == "onnx"
    assert detect_format(renamed).name == "onnx"
    assert detect_format(DIGITS / "digits.keras").name == "keras"
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    assert detect_format(saved).name == "savedmodel"


def test_hdf5_keras_file_is_recognised(tmp_path):
    import h5py

    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps({"class_name": "Sequential"})
    assert detect_format(path).name == "keras-h5"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "it is a PNG image"),
        (b"\x1c\0\0\0TFL3" + b"\0" * 64, "already a TFLite model"),
        (bytes(range(256)) * 4, "not a valid ONNX model"),
    ],
    ids=["empty", "png", "tflite", "garbage"],
)
def test_bad_model_files_are_bad_input_with_a_hint(tmp_path, content, expected):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(BadInputError) as info:
        detect_format(path)
    assert expected in info.value.message
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert info.value.hint


def test_truncated_onnx_is_rejected(tmp_path):
    data = (DIGITS / "digits.onnx").read_bytes()
    path = tmp_path / "digits.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="corrupt or truncated"):
        detect_format(path)


def test_zip_without_keras_config_and_plain_folder_are_rejected(tmp_path):
    archive = tmp_path / "model.keras"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("readme.txt", "hello")
    with pytest.raises(BadInputError, match="not a valid Keras model"):
        detect_format(archive)
    with pytest.raises(BadInputError, match="not a SavedModel"):
        detect_format(tmp_path)


# --- calibration data --------------------------------------------------------------------------------


def test_npz_binds_by_input_name_and_carries_labels(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, input=np.zeros((5, 1, 8, 8), np.float32), labels=np.arange(5))
    samples = load_samples(describe_data(path), [IMAGE])
    assert samples.count == 5
    assert samples.arrays["input"].shape == (5, 1, 8, 8)
    assert samples.labels.tolist() == [0, 1, 2, 3, 4]


def test_multi_input_npz_needs_every_input_by_name(tmp_path):
    inputs = [InputSpec("image", (1, 3, 4, 4)), InputSpec("meta", (1, 5))]
    path = tmp_path / "data.npz"
    np.savez(path, image=np.ones((3, 3, 4, 4), np.float32), meta=np.ones((3, 5), np.float64))
    samples = load_samples(describe_data(path), inputs)
    assert samples.arrays["meta"].dtype == np.float32
    assert samples.sample(2)["image"].shape == (1, 3, 4, 4)
    np.savez(path, image=np.ones((3, 3, 4, 4), np.float32), other=np.ones((3, 5)))
    with pytest.raises(BadInputError, match=r"no array for model input\(s\) \['meta'\]"):
        load_samples(describe_data(path), inputs)


def test_nhwc_data_for_an_nchw_model_gets_a_transpose_hint(tmp_path):
    path = tmp_path / "data.npy"
    np.save(path, np.zeros((4, 8, 8, 1), np.float32))
    with pytest.raises(BadInputError) as info:
        load_samples(describe_data(path), [IMAGE])
    assert "[4, 8, 8, 1]" in info.value.message
    assert "looks NHWC" in info.value.hint


def test_label_count_must_match(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((4, 1, 8, 8), np.float32), labels=np.arange(3))
    with pytest.raises(BadInputError, match="3 labels for 4 samples"):
        load_samples(describe_data(path), [IMAGE])


def test_separate_labels_file(tmp_path):
    data, labels = tmp_path / "x.npy", tmp_path / "labels.txt"
    np.save(data, np.zeros((3, 1, 8, 8), np.float32))
    labels.write_text("7\n1\n4\n")
    samples = load_samples(describe_data(data, labels=labels), [IMAGE])
    assert samples.labels.tolist() == [7, 1, 4]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.npy", None, "no such file"),
        ("data.txt", b"1 2 3", "unsupported file type .txt"),
        ("broken.npy", b"\x93NUMPY garbage", "cannot read NumPy data"),
    ],
)
def test_unusable_data_paths_fail_early(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInputError, match=message):
        describe_data(path)


def test_holdout_split_is_disjoint_deterministic_and_keeps_labels():
    arrays = {"input": np.arange(50, dtype=np.float32).reshape(50, 1, 1, 1)}
    from converters.calibration import Samples

    samples = Samples(arrays, np.arange(50), "x.npy")
    calib, held = split_holdout(samples, 0.2)
    again, _ = split_holdout(samples, 0.2)
    assert (calib.count, held.count) == (40, 10)
    assert not set(calib.arrays["input"].ravel()) & set(held.arrays["input"].ravel())
    assert held.labels.tolist() == held.arrays["input"].ravel().astype(int).tolist()
    assert np.array_equal(calib.arrays["input"], again.arrays["input"])


def test_synthetic_samples_say_so():
    samples = synthetic_samples([IMAGE], count=4)
    assert samples.synthetic
    assert samples.summary()["synthetic"] is True
    assert samples.arrays["input"].shape == (4, 1, 8, 8)


def test_layout_guess():
    assert guess_layout((1, 3, 224, 224)) == "NCHW"
    assert guess_layout((1, 1, 8, 8)) == "NCHW"
    assert guess_layout((1, 224, 224, 3)) == "NHWC"
    assert guess_layout((1, 8, 8, 1)) == "NHWC"


# --- image folders and recipes --------------------------------------------------------------------------


def _write_images(folder: Path, count: int, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> np.ndarray:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, (count, size[0], size[1], channels), dtype=np.uint8)
    for index, image in enumerate(pixels):
        Image.fromarray(image if channels == 3 else image[:, :, 0], mode).save(folder / f"img{index:02d}.png")
    return pixels


def test_image_folder_with_recipe_gives_normalized_nchw(tmp_path):
    pixels = _write_images(tmp_path / "images", 3)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("channel_order: BGR\nscale: 255\nmean: [0.5, 0.25, 0.0]\nstd: [0.5, 0.5, 1.0]\n")
    spec = InputSpec("data", (1, 3, 12, 10))
    samples = load_samples(describe_data(tmp_path / "images", load_recipe(recipe)), [spec])
    expected = (pixels[..., ::-1] / 255.0 - np.array([0.5, 0.25, 0.0])) / np.array([0.5, 0.5, 1.0])
    assert samples.arrays["data"].shape == (3, 3, 12, 10)
    np.testing.assert_allclose(samples.arrays["data"], expected.transpose(0, 3, 1, 2), atol=1e-6)
    assert samples.preprocessing["layout"] == "NCHW"
    assert samples.preprocessing["channel_order"] == "BGR"


def test_images_are_resized_to_the_model_input(tmp_path):
    _write_images(tmp_path / "images", 2, size=(20, 30), mode="L")
    spec = InputSpec("input", (1, 8, 8, 1))
    samples = load_samples(describe_data(tmp_path / "images", ImageRecipe(channel_order="GRAY")), [spec])
    assert samples.arrays["input"].shape == (2, 8, 8, 1)
    assert samples.preprocessing["resize"] == [8, 8]


def test_recipe_typo_names_file_line_and_suggestion(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("scale: 255\nchanel_order: RGB\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe)
    assert f"{recipe}:2: chanel_order: unknown key (did you mean 'channel_order'?)" in info.value.message


def test_recipe_channel_mismatch_is_explained(tmp_path):
    _write_images(tmp_path / "images", 1)
    with pytest.raises(ConfigError, match="images give 3 channel"):
        load_samples(describe_data(tmp_path / "images"), [InputSpec("x", (1, 1, 12, 10))])


def test_empty_image_folder_is_rejected(tmp_path):
    with pytest.raises(BadInputError, match="holds no images"):
        describe_data(tmp_path)


def test_data_ref_crosses_process_boundary_as_json(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 1, 8, 8), np.float32))
    ref = describe_data(path)
    again = DataRef(**json.loads(json.dumps(ref.__dict__)))
    assert Path(again.path).is_absolute()
    assert load_samples(again, [IMAGE]).count == 2


# --- layouts -----------------------------------------------------------------------------------------


def test_candidate_perms_prefer_identity_then_channels_last():
    assert layout.candidate_perms((1, 3, 8, 8), (1, 8, 8, 3))[0] == [0, 2, 3, 1]
    assert layout.candidate_perms((1, 10), (1, 10)) == [None]
    assert layout.candidate_perms((1, 1000, 1, 1), (1, 1, 1, 1000))[0] == [0, 2, 3, 1]
    assert layout.candidate_perms((1, 3, 8, 8), (1, 8, 9, 3)) == []


def test_match_outputs_pairs_outputs_and_finds_their_permutation():
    rng = np.random.default_rng(0)
    reference = {"logits": rng.random((1, 10)), "features": rng.random((1, 4, 3, 2))}
    converted = [reference["features"].transpose(0, 2, 3, 1) + 1e-7, reference["logits"]]
    pairs, error = layout.match_outputs(reference, converted)
    assert pairs == [("features", [0, 2, 3, 1]), ("logits", None)]
    assert error < 1e-5


def test_match_outputs_rejects_wrong_values():
    reference = {"y": np.arange(12, dtype=np.float32).reshape(1, 3, 4)}
    pairs, error = layout.match_outputs(reference, [np.zeros((1, 4, 3), np.float32)])
    assert pairs is None
    assert error > 0.5


def test_converters_package_import_is_light():
    import subprocess

    code = "import converters, converters.convert, sys; print([m for m in ('tensorflow','onnx','onnx2tf','torch') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


# --- command-line parsing of the image recipe and shapes -------------------------------------------------


def test_recipe_flags_override_the_yaml_file(tmp_path):
    from toolkit.commands.convert import build_recipe

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("channel_order: BGR\nmean: [0.5]\nstd: [0.5]\n")
    merged = build_recipe(str(recipe), {"mean": [0.25], "resize": [32, 48], "image_input": "img", "std": None})
    assert (merged.channel_order, merged.mean, merged.std) == ("BGR", [0.25], [0.5])
    assert merged.resize == (32, 48)
    assert merged.input == "img"
    assert build_recipe(None, {"mean": None}) is None


def test_bad_flag_values_are_config_errors():
    from toolkit.commands.convert import _input_shapes, _size, build_recipe

    assert _size("224x160") == [224, 160]
    assert _input_shapes(("x:1,3,8,8", "ns:y:1,4")) == {"x": [1, 3, 8, 8], "ns:y": [1, 4]}
    with pytest.raises(ConfigError, match="HEIGHTxWIDTH"):
        _size("224")
    with pytest.raises(ConfigError, match="NAME:D0,D1"):
        _input_shapes(("1,3,8,8",))
    with pytest.raises(ConfigError, match="scale"):
        build_recipe(None, {"scale": -1.0})


def test_top1_agreement_of_a_constant_output_is_zero():
    from converters.validate import output_metrics

    expected = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]], np.float32)
    assert output_metrics(expected + 0.01, expected)["top1_agreement"] == 1.0
    assert output_metrics(np.zeros_like(expected), expected)["top1_agreement"] == 0.0
    assert output_metrics(np.zeros_like(expected), expected)["cosine"] == 0.0
