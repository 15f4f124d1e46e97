"""The quantization variants edgetk produces, one small spec each (STYLE.md #1).

A spec says what the variant is (for people, the report and the edgetk metadata) and how to ask
TensorFlow Lite's converter for it (read by the conversion worker). Adding a variant is adding one
spec here; nothing else switches on variant names.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.errors import ConfigError


@dataclass(frozen=True)
class VariantSpec:
    """One output flavour of a conversion."""

    name: str
    summary: str
    weights: str  # dtype of stored weights
    activations: str  # dtype activations are computed in
    io_dtype: str  # dtype of the model's inputs and outputs
    needs_calibration: bool  # requires a representative dataset
    # TFLiteConverter settings (names of tf.lite enums, resolved by the worker).
    optimize: bool = False
    supported_types: tuple[str, ...] = ()
    supported_ops: tuple[str, ...] = ("TFLITE_BUILTINS",)

    @property
    def quantized(self) -> bool:
        """True when weights are stored as integers (per-channel applies)."""
        return self.weights.startswith("int")

    def quantization_metadata(self, per_channel: bool) -> dict:
        """The `quantization` block of the edgetk metadata for this variant."""
        return {
            "weights": self.weights,
            "activations": self.activations,
            "io_dtype": self.io_dtype,
            "per_channel": bool(per_channel and self.quantized),
        }


VARIANTS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec("fp32", "float32 reference", "float32", "float32", "float32", False),
        VariantSpec(
            "fp16",
            "float16 weights",
            "float16",
            "float32",
            "float32",
            False,
            optimize=True,
            supported_types=("float16",),
        ),
        VariantSpec("dynamic", "dynamic-range int8 weights", "int8", "float32", "float32", False, optimize=True),
        VariantSpec(
            "int8",
            "full int8, float input/output",
            "int8",
            "int8",
            "float32",
            True,
            optimize=True,
            supported_ops=("TFLITE_BUILTINS_INT8",),
        ),
        VariantSpec(
            "int8-full",
            "full int8, int8 input/output",
            "int8",
            "int8",
            "int8",
            True,
            optimize=True,
            supported_ops=("TFLITE_BUILTINS_INT8",),
        ),
        VariantSpec(
            "int16x8",
            "int16 activations, int8 weights",
            "int8",
            "int16",
            "float32",
            True,
            optimize=True,
            supported_ops=("EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",),
        ),
    )
}

# Shorthands accepted by --quant.
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(VARIANTS),
    "float": ("fp32", "fp16"),
    "int": ("dynamic", "int8", "int8-full", "int16x8"),
}


def parse_variants(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Turn `fp32,int8` / `all` / a list into known variant names, in registry order."""
    words = text.split(",") if isinstance(text, str) else list(text)
    wanted: set[str] = set()
    for word in (w.strip().lower() for w in words):
        if not word:
            continue
        if word in GROUPS:
            wanted.update(GROUPS[word])
        elif word in VARIANTS:
            wanted.add(word)
        else:
            choices = ", ".join([*VARIANTS, *GROUPS])
            raise ConfigError(f"unknown variant {word!r}", f"choose from: {choices}")
    if not wanted:
        raise ConfigError("no variant requested", "pass e.g. --quant fp32,int8 or --quant all")
    return [name for name in VARIANTS if name in wanted]
