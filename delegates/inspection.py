"""`edgetk inspect`: what is inside a .tflite and what each delegate is expected to take, without TensorFlow."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from delegates.compat import PREDICTORS, edgetpu_compiled, guess_variant, predict
from delegates.metadata import read_metadata
from delegates.tflite_model import TensorInfo, TFLiteModel, parse_model, read_bytes
from toolkit.errors import ToolkitError

DEFAULT_PREDICTIONS = ("gpu", "nnapi", "edgetpu")


def inspect_model(path: str | Path, delegates: list[str] | None = None, *, android_api: int = 30) -> dict[str, Any]:
    """A JSON-ready description of the model and the predicted delegation per delegate."""
    data = read_bytes(path)
    model = parse_model(data, str(path))
    return {
        "file": {"path": str(path), "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "schema_version": model.version,
        "description": model.description,
        "subgraphs": len(model.subgraphs),
        "signatures": list(model.signature_keys),
        "variant": guess_variant(model),
        "metadata": _metadata(model),
        "inputs": [_tensor(model.main.tensors[i]) for i in model.main.inputs],
        "outputs": [_tensor(model.main.tensors[i]) for i in model.main.outputs],
        "operators": operator_table(model),
        "node_count": len(model.main.operators),
        "custom_ops": sorted({c.name for c in model.operator_codes if c.is_custom}),
        "flex_ops": sorted({c.name for c in model.operator_codes if c.is_custom and c.name.startswith("Flex")}),
        "edgetpu_compiled": edgetpu_compiled(model),
        "tensors": tensor_summary(model),
        "predictions": {d: predict(model, d, android_api=android_api).to_dict() for d in _wanted(delegates)},
    }


def _wanted(delegates: list[str] | None) -> list[str]:
    wanted = list(delegates or DEFAULT_PREDICTIONS)
    unknown = [d for d in wanted if d not in PREDICTORS]
    if unknown:
        from toolkit.errors import ConfigError

        raise ConfigError(
            f"no compatibility prediction for {', '.join(unknown)}",
            f"predictions exist for: {', '.join(PREDICTORS)} (xnnpack and cpu run every builtin op)",
        )
    return wanted


def _metadata(model: TFLiteModel) -> dict[str, Any] | None:
    try:
        return read_metadata(model)
    except ToolkitError as exc:
        return {"error": exc.message}


def _tensor(tensor: TensorInfo) -> dict[str, Any]:
    q = tensor.quantization
    return {
        "name": tensor.name,
        "shape": list(tensor.shape),
        "shape_signature": list(tensor.shape_signature),
        "dtype": tensor.dtype,
        "quantization": None
        if q is None
        else {
            "scale": list(q.scale) if q.per_channel else q.scale[0],
            "zero_point": list(q.zero_point) if q.per_channel else q.zero_point[0],
            "per_channel": q.per_channel,
            "axis": q.quantized_dimension,
        },
    }


def operator_table(model: TFLiteModel) -> list[dict[str, Any]]:
    """Operators of the main subgraph: name, version, count, custom (most frequent first)."""
    counts = Counter((op.name, op.code.version, op.code.is_custom) for op in model.main.operators)
    rows = [
        {"op": name, "version": version, "count": n, "custom": custom} for (name, version, custom), n in counts.items()
    ]
    return sorted(rows, key=lambda r: (-r["count"], r["op"]))


def tensor_summary(model: TFLiteModel) -> dict[str, Any]:
    tensors = model.main.tensors
    constants = [t for t in tensors if t.has_data]
    activations = [t for t in tensors if not t.has_data]
    return {
        "count": len(tensors),
        "constant_dtypes": dict(Counter(t.dtype for t in constants)),
        "activation_dtypes": dict(Counter(t.dtype for t in activations)),
        "quantized": sum(1 for t in tensors if t.quantization),
        "per_channel": sum(1 for t in tensors if t.quantization and t.quantization.per_channel),
        "weights_bytes": sum(model.buffers[t.buffer].size for t in constants),
    }
