"""PyTorch models: export a torch.nn.Module to ONNX, then convert it like any ONNX model.

    import torch
    from converters import convert_torch
    result = convert_torch(model, torch.zeros(1, 3, 224, 224), "out/", variants=["fp32", "int8"],
                           calibration=calib_nchw)   # numpy array or {input name: array}

The export uses TorchScript tracing (`torch.onnx.export(..., dynamo=False)`, opset 17): it takes
well under a second and writes one self-contained file (the dynamo exporter writes weights to a
separate .onnx.data file). The exported `<name>.onnx` is kept beside the variants so the
metadata's source hash refers to a file the user has.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolkit.errors import ConversionError, MissingDependencyError

DEFAULT_OPSET = 17


def convert_torch(
    module: Any,
    example_inputs: Any,
    out_dir: str | Path,
    variants: str | Sequence[str] = ("fp32",),
    *,
    name: str = "model",
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int = DEFAULT_OPSET,
    calibration: Any = None,
    evaluation: Any = None,
    **convert_options: Any,
) -> Any:
    """Export `module` (traced with `example_inputs`) to ONNX and convert it with `convert_model`.

    calibration / evaluation accept what `convert_model` accepts, plus torch tensors (or dicts of
    them), in the module's own layout (NCHW for typical vision models).
    """
    from converters.convert import convert_model

    torch = _import_torch()
    examples = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    inputs = list(input_names or (["input"] if len(examples) == 1 else [f"input_{i}" for i in range(len(examples))]))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edgetk-torch-", dir=out_dir) as scratch:
        onnx_path = Path(scratch) / f"{name}.onnx"
        _export(torch, module, examples, onnx_path, inputs, output_names, opset)
        result = convert_model(
            onnx_path,
            out_dir,
            variants,
            calibration=_to_numpy(calibration),
            evaluation=_to_numpy(evaluation),
            **convert_options,
        )
        kept = out_dir / onnx_path.name
        os.replace(onnx_path, kept)
    result.source = kept
    return result


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError(
            "converting a PyTorch module needs torch", "pip install 'edgetk[torch]' (or torch==2.13.0)"
        ) from exc
    return torch


def _export(
    torch: Any,
    module: Any,
    examples: tuple[Any, ...],
    path: Path,
    input_names: list[str],
    output_names: Sequence[str] | None,
    opset: int,
) -> None:
    import warnings

    module = module.eval()
    try:
        # The TorchScript exporter is the fast, single-file one (FIELD-NOTES); its deprecation
        # notice is for the exporter's authors' plans, not something a user can act on here.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                examples,
                str(path),
                input_names=input_names,
                output_names=list(output_names) if output_names else None,
                opset_version=opset,
                dynamo=False,
            )
    except Exception as exc:
        raise ConversionError(
            f"torch.onnx.export failed: {type(exc).__name__}: {exc}"[:500],
            "check that the module runs on example_inputs and uses ONNX-exportable operations",
        ) from exc


def _to_numpy(data: Any) -> Any:
    """Torch tensors (alone or in a dict) become numpy arrays; anything else passes through."""
    if data is None or isinstance(data, (str, Path, np.ndarray)):
        return data
    if isinstance(data, dict):
        return {key: _to_numpy(value) for key, value in data.items()}
    if hasattr(data, "detach"):
        return data.detach().cpu().numpy()
    return data
