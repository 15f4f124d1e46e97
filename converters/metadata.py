"""Write the `edgetk` metadata entry into a .tflite file (docs/internals.md, "edgetk metadata").

The entry is one item of the flatbuffer's Model.metadata list whose buffer holds UTF-8 JSON. We
rebuild the flatbuffer with the object API generated from the TFLite schema (shipped by
ai_edge_litert, or tensorflow.lite as a fallback). The reader lives in `delegates/` and needs no
flatbuffers package.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from toolkit.errors import MissingDependencyError

SCHEMA = "edgetk.metadata/1"
METADATA_NAME = "edgetk"
TFLITE_IDENTIFIER = b"TFL3"


def edgetk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgetk")
    except PackageNotFoundError:
        return "0.1.0"


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, or of every file under a directory (names and contents, sorted)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def build_metadata(
    *,
    variant: str,
    source: dict[str, Any],
    quantization: dict[str, Any],
    calibration: dict[str, Any] | None,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    converter: dict[str, Any],
) -> dict[str, Any]:
    """The metadata document, with keys in the documented order."""
    return {
        "schema": SCHEMA,
        "edgetk_version": edgetk_version(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "variant": variant,
        "source": source,
        "quantization": quantization,
        "calibration": calibration,
        "inputs": inputs,
        "outputs": outputs,
        "converter": converter,
    }


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema

        return schema
    except ImportError:
        pass
    try:
        from tensorflow.lite.python import schema_py_generated as schema

        return schema
    except ImportError as exc:
        raise MissingDependencyError(
            "writing .tflite metadata needs the TFLite schema module", "pip install 'edgetk[convert]'"
        ) from exc


def embed_metadata(path: Path, document: dict[str, Any]) -> None:
    """Add (or replace) the edgetk entry in the .tflite file at path, rewriting it in place."""
    import flatbuffers

    schema = _schema()
    data = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    payload = json.dumps(document, separators=(",", ":")).encode("utf-8")
    buffer = schema.BufferT()
    buffer.data = list(payload)
    model.buffers = list(model.buffers or [])
    model.metadata = [m for m in (model.metadata or []) if _name(m) != METADATA_NAME]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(data) + len(payload) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    path.write_bytes(bytes(builder.Output()))


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The edgetk entry of a .tflite file (via the schema module; the runner has its own reader)."""
    schema = _schema()
    model = schema.Model.GetRootAs(bytearray(path.read_bytes()), 0)
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        if (entry.Name() or b"").decode() == METADATA_NAME:
            raw = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(raw).decode("utf-8"))
    return None


def _name(entry: Any) -> str:
    name = entry.name
    return name.decode() if isinstance(name, bytes) else str(name or "")
