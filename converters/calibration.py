"""Calibration and evaluation data: .npy/.npz arrays or a folder of images with a preprocessing recipe.

Everything here works in the SOURCE model's layout (NCHW for most ONNX models): users hand edgetk
data the way their model takes it, and the conversion worker transposes it for the TFLite model
with the permutation it recorded. Loading is split in two steps: `describe_data` checks what the
user pointed at early (in the CLI process, before any slow work), `load_samples` binds it to the
model's inputs once their names and shapes are known (inside the worker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from toolkit.errors import BadInputError, ConfigError, MissingDependencyError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
LABELS_KEY = "labels"
DEFAULT_SYNTHETIC_COUNT = 64


class ImageRecipe(BaseModel):
    """How to turn image files into model inputs: x = (pixels / scale - mean) / std."""

    model_config = ConfigDict(extra="forbid")

    input: str | None = None  # model input the images feed (needed only for multi-input models)
    resize: tuple[int, int] | None = None  # [height, width]; default: the model input's size
    channel_order: Literal["RGB", "BGR", "GRAY"] = "RGB"
    scale: float = Field(255.0, gt=0)
    mean: list[float] = Field(default_factory=lambda: [0.0])
    std: list[float] = Field(default_factory=lambda: [1.0])
    layout: Literal["NCHW", "NHWC"] | None = None  # source model layout; default: guessed from its shape
    limit: int | None = Field(None, gt=0)  # use at most this many images

    def normalization(self) -> dict[str, list[float]]:
        """Mean/std in input units (after dividing by scale), as recorded in the edgetk metadata."""
        return {"mean": list(self.mean), "std": list(self.std), "scale": [self.scale]}


@dataclass(frozen=True)
class InputSpec:
    """A source model input: name, shape (None for unknown dims) and numpy dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class DataRef:
    """What the user pointed at; plain data so it can cross into the conversion worker as JSON."""

    path: str  # absolute (the worker runs in another folder)
    kind: Literal["npy", "npz", "images"]
    recipe: dict[str, Any] | None = None
    labels: str | None = None
    display: str = ""  # the path as the user wrote it, for reports and metadata

    @property
    def name(self) -> str:
        return self.display or self.path


@dataclass
class Samples:
    """Model inputs bound by source input name, each (N, ...) in the source layout, plus labels."""

    arrays: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = ""
    synthetic: bool = False
    preprocessing: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0]) if self.arrays else 0

    def take(self, indices: np.ndarray) -> Samples:
        """A subset of the samples (and their labels)."""
        labels = self.labels[indices] if self.labels is not None else None
        arrays = {name: array[indices] for name, array in self.arrays.items()}
        return Samples(arrays, labels, self.source, self.synthetic, self.preprocessing, dict(self.extra))

    def sample(self, index: int) -> dict[str, np.ndarray]:
        """One sample with a batch dimension of 1, keyed by input name."""
        return {name: array[index : index + 1] for name, array in self.arrays.items()}

    def summary(self) -> dict[str, Any]:
        """The `calibration` block of the edgetk metadata."""
        return {
            "source": self.source,
            "samples": self.count,
            "synthetic": self.synthetic,
            "preprocessing": self.preprocessing,
        }


# --- describing user data (CLI process, cheap) ----------------------------------------------------


def describe_data(
    path: str | Path, recipe: ImageRecipe | None = None, labels: str | Path | None = None, what: str = "calibration"
) -> DataRef:
    """Check that a data path exists and is of a supported kind; BadInputError otherwise."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{what} data {path}: no such file or directory", "check the path")
    if labels is not None and not Path(labels).is_file():
        raise BadInputError(f"labels file {labels}: not found", "pass a .npy or text file with one label per line")
    labels_text = str(Path(labels).resolve()) if labels is not None else None
    display = str(path)
    if path.is_dir():
        if not _image_files(path):
            raise BadInputError(
                f"{what} data {path}: the folder holds no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...)",
                "point at a folder of images, or at a .npy/.npz file",
            )
        recipe_data = (recipe or ImageRecipe()).model_dump(mode="json")
        return DataRef(str(path.resolve()), "images", recipe_data, labels_text, display)
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("npy", "npz"):
        raise BadInputError(
            f"{what} data {path}: unsupported file type {path.suffix or '(none)'}",
            "use a .npy array, a .npz archive keyed by input name, or a folder of images",
        )
    _read_arrays(path)  # fail early on a corrupt file
    return DataRef(str(path.resolve()), kind, None, labels_text, display)


def load_recipe(path: str | Path) -> ImageRecipe:
    """Read an image preprocessing recipe from YAML (strict: unknown keys are errors)."""
    from toolkit.yamlconfig import load_config

    return load_config(ImageRecipe, path)


# --- binding data to model inputs (worker) --------------------------------------------------------


def load_samples(ref: DataRef, inputs: list[InputSpec]) -> Samples:
    """Read the data and bind it to the model's inputs, checking names, shapes and sample counts."""
    if ref.kind == "images":
        samples = _load_images(ref, inputs)
    else:
        samples = _load_arrays(ref, inputs)
    if ref.labels is not None:
        samples.labels = _read_labels(Path(ref.labels))
    _check_labels(samples, ref.name)
    return samples


def synthetic_samples(inputs: list[InputSpec], count: int = DEFAULT_SYNTHETIC_COUNT, seed: int = 0) -> Samples:
    """Uniform [0, 1) inputs (integer inputs: 0..9); used only when the user asks for it."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for spec in inputs:
        shape = (count, *_known_dims(spec)[1:])
        if np.issubdtype(np.dtype(spec.dtype), np.integer):
            arrays[spec.name] = rng.integers(0, 10, shape).astype(spec.dtype)
        else:
            arrays[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
    return Samples(arrays, None, "synthetic", True, {"distribution": "uniform(0, 1)", "seed": seed})


def split_holdout(samples: Samples, fraction: float = 0.2, seed: int = 0) -> tuple[Samples, Samples]:
    """Split into (calibration, held-out evaluation); the held-out part is never calibrated on."""
    if samples.count < 2:
        raise BadInputError(
            f"{samples.source}: {samples.count} sample(s) cannot be split into calibration and evaluation",
            "give more calibration samples, or a separate evaluation set with --eval",
        )
    order = np.random.default_rng(seed).permutation(samples.count)
    held = max(1, round(samples.count * fraction))
    return samples.take(np.sort(order[held:])), samples.take(np.sort(order[:held]))


def limit(samples: Samples, count: int | None) -> Samples:
    """The first `count` samples (all when count is None)."""
    if count is None or samples.count <= count:
        return samples
    return samples.take(np.arange(count))


def _load_arrays(ref: DataRef, inputs: list[InputSpec]) -> Samples:
    arrays = _read_arrays(Path(ref.path))
    labels = arrays.pop(LABELS_KEY, None)
    bound = _bind_by_name(arrays, inputs, ref.name)
    checked = {spec.name: _fit_shape(bound[spec.name], spec, ref.name) for spec in inputs}
    counts = {name: array.shape[0] for name, array in checked.items()}
    if len(set(counts.values())) > 1:
        raise BadInputError(
            f"{ref.name}: inputs have different sample counts {counts}",
            "every input needs the same number of samples",
        )
    labels_array = np.asarray(labels).reshape(-1) if labels is not None else None
    return Samples(checked, labels_array, ref.name, False, None)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """{key: array}; a .npy file gives one unnamed array under the key ''."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        else:
            arrays = {"": np.load(path, allow_pickle=False)}
    except (ValueError, OSError, EOFError) as exc:
        raise BadInputError(
            f"{path}: cannot read NumPy data: {exc}", "re-save it with numpy.save / numpy.savez"
        ) from exc
    if not arrays or all(key == LABELS_KEY for key in arrays):
        raise BadInputError(f"{path}: holds no input arrays", "save one array per model input")
    return arrays


def _bind_by_name(arrays: dict[str, np.ndarray], inputs: list[InputSpec], source: str) -> dict[str, np.ndarray]:
    names = [spec.name for spec in inputs]
    if all(name in arrays for name in names):
        return {name: arrays[name] for name in names}
    if len(inputs) == 1 and len(arrays) == 1:
        return {names[0]: next(iter(arrays.values()))}
    missing = [name for name in names if name not in arrays]
    raise BadInputError(
        f"{source}: no array for model input(s) {missing}; the file has {sorted(arrays)}",
        f"save an .npz keyed by input name, e.g. numpy.savez(path, **{{{names[0]!r}: x, ...}})",
    )


def _fit_shape(array: np.ndarray, spec: InputSpec, source: str) -> np.ndarray:
    """Check a (N, ...) array against the input shape; a single sample without batch dim is accepted."""
    expected = spec.shape[1:]
    if array.ndim == len(spec.shape) - 1 and _dims_match(array.shape, expected):
        array = array[None]
    if array.ndim != len(spec.shape) or not _dims_match(array.shape[1:], expected):
        raise BadInputError(
            f"{source}: array for input {spec.name!r} has shape {list(array.shape)}, "
            f"the model takes {_format_shape(spec.shape)}",
            _layout_hint(array.shape, spec.shape),
        )
    if not np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
        raise BadInputError(f"{source}: array for input {spec.name!r} is not numeric ({array.dtype})")
    return np.ascontiguousarray(array.astype(spec.dtype, copy=False))


def _dims_match(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected, strict=True))


def _layout_hint(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> str:
    if len(actual) == 4 and len(expected) == 4:
        as_nchw = (actual[0], actual[3], actual[1], actual[2])
        if _dims_match(as_nchw[1:], expected[1:]):
            return "the data looks NHWC but the model takes NCHW: numpy.transpose(x, (0, 3, 1, 2))"
        as_nhwc = (actual[0], actual[2], actual[3], actual[1])
        if _dims_match(as_nhwc[1:], expected[1:]):
            return "the data looks NCHW but the model takes NHWC: numpy.transpose(x, (0, 2, 3, 1))"
    return "give arrays shaped (samples, ...) in the source model's layout"


def _format_shape(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _known_dims(spec: InputSpec) -> tuple[int, ...]:
    return tuple(1 if d is None else d for d in spec.shape)


def _read_labels(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False).reshape(-1)
        return np.loadtxt(path, dtype=np.int64, ndmin=1, delimiter=",")
    except (ValueError, OSError) as exc:
        raise BadInputError(f"labels file {path}: cannot read: {exc}", "one integer class per line, or a .npy") from exc


def _check_labels(samples: Samples, source: str) -> None:
    if samples.labels is None:
        return
    if samples.labels.shape[0] != samples.count:
        raise BadInputError(
            f"{source}: {samples.labels.shape[0]} labels for {samples.count} samples",
            "give exactly one label per sample",
        )
    samples.labels = samples.labels.astype(np.int64)


# --- image folders ---------------------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _load_images(ref: DataRef, inputs: list[InputSpec]) -> Samples:
    recipe = ImageRecipe.model_validate(ref.recipe or {})
    spec = _image_input(recipe, inputs, ref.name)
    if len(inputs) > 1:
        raise BadInputError(
            f"{ref.name}: an image folder can feed only single-input models; this one has {len(inputs)} inputs",
            "save the inputs as an .npz keyed by input name",
        )
    layout = recipe.layout or guess_layout(spec.shape)
    channels, height, width = _image_geometry(spec, layout, recipe)
    files = _image_files(Path(ref.path))[: recipe.limit]
    pixels = np.stack([_read_image(path, recipe.channel_order, (height, width)) for path in files])
    _check_channels(pixels.shape[-1], channels, recipe, ref.name)
    mean = _per_channel(recipe.mean, channels, "mean")
    std = _per_channel(recipe.std, channels, "std")
    data = (pixels / recipe.scale - mean) / std
    if layout == "NCHW":
        data = data.transpose(0, 3, 1, 2)
    preprocessing = {**recipe.model_dump(mode="json"), "layout": layout, "resize": [height, width], "files": len(files)}
    return Samples({spec.name: np.ascontiguousarray(data.astype(spec.dtype))}, None, ref.name, False, preprocessing)


def guess_layout(shape: tuple[int | None, ...]) -> str:
    """NCHW when dim 1 looks like a channel count and the last dim does not; NHWC otherwise."""
    channel_counts = (1, 3, 4)
    if len(shape) == 4 and shape[1] in channel_counts and shape[3] not in channel_counts:
        return "NCHW"
    return "NHWC"


def _image_input(recipe: ImageRecipe, inputs: list[InputSpec], source: str) -> InputSpec:
    if recipe.input is None:
        return inputs[0]
    for spec in inputs:
        if spec.name == recipe.input:
            return spec
    raise ConfigError(
        f"{source}: image recipe names input {recipe.input!r}, the model has {[s.name for s in inputs]}",
        "fix `input:` in the recipe",
    )


def _image_geometry(spec: InputSpec, layout: str, recipe: ImageRecipe) -> tuple[int, int, int]:
    if len(spec.shape) != 4:
        raise BadInputError(
            f"input {spec.name!r} has shape {_format_shape(spec.shape)}; images need a 4-D input",
            "give .npy/.npz calibration data for this model",
        )
    _, c, h, w = spec.shape if layout == "NCHW" else (spec.shape[0], spec.shape[3], spec.shape[1], spec.shape[2])
    if recipe.resize is not None:
        h, w = recipe.resize
    if h is None or w is None:
        raise ConfigError(f"input {spec.name!r} has a dynamic size", "set `resize: [height, width]` in the recipe")
    channels = c if c is not None else (1 if recipe.channel_order == "GRAY" else 3)
    return int(channels), int(h), int(w)


def _read_image(path: Path, channel_order: str, size: tuple[int, int]) -> np.ndarray:
    """One image as float32 (H, W, C) in the requested channel order."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError(
            "reading calibration images needs Pillow", "pip install pillow (or edgetk[convert])"
        ) from exc
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channel_order == "GRAY" else "RGB")
            image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read image: {exc}", "remove or replace the file") from exc
    if pixels.ndim == 2:
        return pixels[:, :, None]
    return pixels[:, :, ::-1] if channel_order == "BGR" else pixels


def _check_channels(got: int, expected: int, recipe: ImageRecipe, source: str) -> None:
    if got != expected:
        raise ConfigError(
            f"{source}: images give {got} channel(s) ({recipe.channel_order}), the model input takes {expected}",
            "set `channel_order: GRAY` for 1-channel models, RGB or BGR for 3-channel ones",
        )


def _per_channel(values: list[float], channels: int, what: str) -> np.ndarray:
    if len(values) not in (1, channels):
        raise ConfigError(
            f"image recipe: {what} has {len(values)} values for {channels} channel(s)",
            f"give one {what} value, or one per channel",
        )
    return np.asarray(values, dtype=np.float32).reshape(1, 1, 1, -1)
