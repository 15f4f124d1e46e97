"""Source model formats, recognised by their content (STYLE.md #1: a registry of small specs).

Each format says how to recognise its files from their first bytes (the extension is only a hint:
a renamed file is still recognised, and a PNG called model.onnx is rejected), which engine computes
reference outputs during validation, and which function in `converters.builders` turns it into a
TensorFlow function inside the conversion worker.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import BadInputError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
# What a few common wrong files start with, so the error can say what the file actually is.
KNOWN_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"\x93NUMPY": "a NumPy array (.npy)",
    b"\x1f\x8b": "a gzip archive",
}


@dataclass(frozen=True)
class SourceFormat:
    """One source model format."""

    name: str
    description: str
    extensions: tuple[str, ...]
    is_directory: bool
    recognise: Callable[[Path, bytes], bool]
    reference_engine: str  # computes the source model's outputs during validation
    builder: str  # "module:function" run inside the conversion worker


def _is_tflite(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == b"TFL3"


def _recognise_onnx(path: Path, head: bytes) -> bool:
    """ONNX files are protobuf ModelProto messages; parse the graph structure without weights."""
    if not head or head.startswith((HDF5_SIGNATURE, ZIP_SIGNATURE)) or _is_tflite(head):
        return False
    # A serialized ModelProto begins with a field tag: ir_version (0x08), producer fields (0x12,
    # 0x1a), domain (0x22), model_version (0x28), doc_string (0x32), graph (0x3a), opset (0x42).
    if head[0] not in (0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42):
        return False
    try:
        import onnx

        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:
        return False
    return len(model.graph.output) > 0 and len(model.graph.node) > 0


def _recognise_keras_zip(path: Path, head: bytes) -> bool:
    if not head.startswith(ZIP_SIGNATURE):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return "config.json" in names


def _recognise_keras_h5(path: Path, head: bytes) -> bool:
    if not head.startswith(HDF5_SIGNATURE):
        return False
    try:
        import h5py

        with h5py.File(path, "r") as handle:
            return "model_config" in handle.attrs
    except Exception:
        return False


def _recognise_savedmodel(path: Path, head: bytes) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in ("saved_model.pb", "saved_model.pbtxt"))


FORMATS: dict[str, SourceFormat] = {
    spec.name: spec
    for spec in (
        SourceFormat(
            "onnx", "ONNX model", (".onnx",), False, _recognise_onnx, "onnxruntime", "converters.builders:build_onnx"
        ),
        SourceFormat(
            "keras",
            "Keras model (.keras)",
            (".keras",),
            False,
            _recognise_keras_zip,
            "tensorflow",
            "converters.builders:build_keras",
        ),
        SourceFormat(
            "keras-h5",
            "Keras model (HDF5 .h5)",
            (".h5", ".hdf5"),
            False,
            _recognise_keras_h5,
            "tensorflow",
            "converters.builders:build_keras",
        ),
        SourceFormat(
            "savedmodel",
            "TensorFlow SavedModel directory",
            (),
            True,
            _recognise_savedmodel,
            "tensorflow",
            "converters.builders:build_savedmodel",
        ),
    )
}

SUPPORTED_TEXT = "ONNX (.onnx), Keras (.keras, .h5) or a SavedModel directory"


def detect_format(path: str | Path) -> SourceFormat:
    """Recognise the format of a model file or directory by its content; BadInputError if none fits."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or directory", "check the model path")
    if path.is_dir():
        return _detect_directory(path)
    head = _read_head(path)
    if not head:
        raise BadInputError(f"{path}: the file is empty", f"re-export the model; edgetk reads {SUPPORTED_TEXT}")
    if _is_tflite(head):
        raise BadInputError(
            f"{path}: this is already a TFLite model", "profile it with `edgetk profile`, or convert its source model"
        )
    for spec in FORMATS.values():
        if not spec.is_directory and spec.recognise(path, head):
            return spec
    raise BadInputError(f"{path}: {_describe_unknown(path, head)}", f"edgetk converts {SUPPORTED_TEXT}")


def _detect_directory(path: Path) -> SourceFormat:
    for spec in FORMATS.values():
        if spec.is_directory and spec.recognise(path, b""):
            return spec
    raise BadInputError(
        f"{path}: directory is not a SavedModel (no saved_model.pb inside)",
        "pass the SavedModel directory itself, or a model file",
    )


def _read_head(path: Path, size: int = 64) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read: {exc.strerror}", "check file permissions") from exc


def _describe_unknown(path: Path, head: bytes) -> str:
    """Say what the file looks like, so 'wrong file' is obvious from the message."""
    for signature, what in KNOWN_SIGNATURES.items():
        if head.startswith(signature):
            return f"not a model file: it is {what}"
    claimed = next((s for s in FORMATS.values() if path.suffix.lower() in s.extensions), None)
    if claimed is not None:
        return f"not a valid {claimed.description}: the file is corrupt or truncated"
    return "not a recognised model file"
