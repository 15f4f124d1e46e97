"""Conversion: ONNX, Keras and SavedModel (and PyTorch via ONNX) to validated TFLite variants.

The public API is imported lazily so `import converters` stays cheap; TensorFlow and onnx2tf run
only inside the conversion worker process.

    from converters import convert_model
    result = convert_model("model.onnx", "out/", variants=["fp32", "int8"], calibration="calib.npz")
    result.variants["int8"].tflite_path, result.variants["int8"].metrics
"""

from __future__ import annotations

from typing import Any

__all__ = ["VARIANTS", "ConversionResult", "VariantResult", "convert_model", "convert_torch", "parse_variants"]

_EXPORTS = {
    "convert_model": "converters.convert",
    "ConversionResult": "converters.convert",
    "VariantResult": "converters.convert",
    "convert_torch": "converters.torch_export",
    "VARIANTS": "converters.variants",
    "parse_variants": "converters.variants",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'converters' has no attribute {name!r}")
