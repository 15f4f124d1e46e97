"""The conversion worker: a child process that owns TensorFlow and onnx2tf.

Why a child: onnx2tf changes process-wide state when imported (recursion limit, warning filters,
logging), TensorFlow costs ~0.5 GB, and a converter crash must not take the CLI with it. The parent
(`converters.convert`) writes a request JSON and reads progress lines from our stdout and a result
JSON from the work folder. Everything else we or our libraries print goes to stderr (a log file).

Steps: build a TensorFlow function from the source, bind calibration/evaluation data, convert
float32 once to learn and numerically verify how inputs/outputs map and were permuted, convert
exactly the requested variants, and compute the source model's reference outputs on the
evaluation samples.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converters import layout
from converters.builders import BuildRequest, BuiltModel
from converters.calibration import DataRef, InputSpec, Samples, limit, load_samples, split_holdout, synthetic_samples
from converters.sources import FORMATS
from converters.variants import VARIANTS, VariantSpec
from toolkit.errors import ConversionError, ToolkitError

RESULT_NAME = "result.json"
EVAL_NAME = "eval.npz"


class Progress:
    """JSON lines on the original stdout; fd 1 itself is pointed at stderr so library noise can't mix in."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)

    def step(self, message: str, **fields: Any) -> None:
        self._out.write(json.dumps({"step": message, **fields}) + "\n")
        self._out.flush()


@dataclass
class IOEntry:
    """One TFLite input or output and the source tensor it stands for."""

    index: int
    name: str
    shape: list[int]
    source_name: str
    source_shape: list[int]
    perm: list[int] | None


def main(argv: list[str]) -> int:
    progress = Progress()
    request_path = Path(argv[0])
    workdir = request_path.parent
    try:
        request = json.loads(request_path.read_text())
        result = run(request, workdir, progress)
        (workdir / RESULT_NAME).write_text(json.dumps({"ok": True, **result}, indent=2))
        return 0
    except ToolkitError as error:
        traceback.print_exc()  # the cause (e.g. the TFLite converter's own message) goes to the log
        (workdir / RESULT_NAME).write_text(json.dumps({"ok": False, "error": error.to_dict()}))
        return 1
    except BaseException as exc:  # report anything unexpected as one error, with the traceback in the log
        traceback.print_exc()
        error = ConversionError(f"conversion failed: {type(exc).__name__}: {exc}"[:500], "run with --debug for details")
        (workdir / RESULT_NAME).write_text(json.dumps({"ok": False, "error": error.to_dict()}))
        return 1


def run(request: dict[str, Any], workdir: Path, progress: Progress) -> dict[str, Any]:
    """The whole conversion; returns the result document the parent reads."""
    _quiet_tensorflow()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    data = _DataLoader(request)
    progress.step("building TensorFlow graph", engine=FORMATS[request["format"]].builder)
    built = _build(request, workdir, data)
    timings["build_s"] = time.perf_counter() - started
    calibration, evaluation = data.resolve(built.inputs)
    progress.step("checking input/output layouts")
    fp32_bytes = _convert(built, VARIANTS["fp32"], None, None, request)
    inputs, outputs, worst = _map_io(built, fp32_bytes, evaluation)
    out_dir = Path(request["out_dir"])
    variants: dict[str, Any] = {}
    for name in request["variants"]:
        spec = VARIANTS[name]
        detail = f" ({calibration.count} calibration samples)" if spec.needs_calibration and calibration else ""
        progress.step(f"converting {name}{detail}", variant=name)
        tic = time.perf_counter()
        payload = fp32_bytes if name == "fp32" else _convert(built, spec, calibration, inputs, request)
        path = out_dir / f"{request['stem']}.{name}.tflite"
        path.write_bytes(payload)
        variants[name] = {
            "path": str(path),
            "seconds": time.perf_counter() - tic,
            "bytes": len(payload),
            **_io_dtypes(payload),
        }
    progress.step(f"computing {built.reference_engine} reference outputs on {evaluation.count} samples")
    _write_evaluation(built, evaluation, workdir / EVAL_NAME)
    timings["total_s"] = time.perf_counter() - started
    return {
        "inputs": [entry.__dict__ for entry in inputs],
        "outputs": [entry.__dict__ for entry in outputs],
        "input_dtypes": {spec.name: spec.dtype for spec in built.inputs},
        "layout_check_error": worst,
        "fp32_size": len(fp32_bytes),
        "per_channel": bool(request.get("per_channel", True)),
        "variants": variants,
        "calibration": calibration.summary() if calibration else None,
        "evaluation": {**evaluation.summary(), "labels": evaluation.labels is not None, **evaluation.extra},
        "reference_engine": built.reference_engine,
        "converter": built.converter,
        "timings": timings,
    }


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


class _DataLoader:
    """Binds the user's calibration/evaluation data to the model inputs once they are known."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self._calibration: Samples | None = None
        self._loaded = False

    def calibration_for(self, inputs: list[InputSpec]) -> Samples | None:
        if not self._loaded:
            ref = self.request.get("calibration")
            if ref is not None:
                self._calibration = load_samples(DataRef(**ref), inputs)
            elif self.request.get("synthetic_calibration"):
                self._calibration = synthetic_samples(inputs, self.request.get("calibration_samples") or 64)
            self._loaded = True
        return self._calibration

    def probe_images(self, inputs: list[InputSpec]) -> np.ndarray | None:
        """NHWC samples of a single image input, for onnx2tf's internal checks."""
        samples = self.calibration_for(inputs)
        if samples is None or len(inputs) != 1 or len(inputs[0].shape) != 4:
            return None
        return samples.arrays[inputs[0].name][:20].transpose(0, 2, 3, 1)

    def resolve(self, inputs: list[InputSpec]) -> tuple[Samples | None, Samples]:
        """(calibration samples or None, evaluation samples), both in the source layout."""
        calibration = self.calibration_for(inputs)
        eval_ref = self.request.get("evaluation")
        if eval_ref is not None:
            evaluation = load_samples(DataRef(**eval_ref), inputs)
            evaluation.extra["held_out"] = False
        elif calibration is not None and not calibration.synthetic:
            calibration, evaluation = split_holdout(calibration, self.request.get("holdout_fraction", 0.2))
            evaluation.extra["held_out"] = True
            evaluation.source = f"{evaluation.source} (held-out split, never used for calibration)"
        else:
            evaluation = synthetic_samples(inputs, 8, seed=1)
            evaluation.source = "random inputs (no --eval or calibration data given)"
            evaluation.extra["held_out"] = False
        if calibration is not None:
            calibration = limit(calibration, self.request.get("calibration_samples"))
        return calibration, limit(evaluation, self.request.get("eval_samples"))


def _build(request: dict[str, Any], workdir: Path, data: _DataLoader) -> BuiltModel:
    module_name, attr = FORMATS[request["format"]].builder.split(":")
    builder = getattr(importlib.import_module(module_name), attr)
    build_request = BuildRequest(
        source=Path(request["source"]),
        workdir=workdir,
        probe_images=data.probe_images,
        input_shapes=request.get("input_shapes") or {},
        keep_layout=request.get("keep_layout") or [],
    )
    return builder(build_request)


# --- TFLite conversion --------------------------------------------------------------------------------


def _convert(
    built: BuiltModel,
    spec: VariantSpec,
    calibration: Samples | None,
    inputs: list[IOEntry] | None,
    request: dict[str, Any],
) -> bytes:
    """One TFLiteConverter run configured from the variant spec."""
    import tensorflow as tf

    converter = built.make_converter()
    if spec.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [getattr(tf, name) for name in spec.supported_types]
    converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, name) for name in spec.supported_ops]
    if spec.quantized:
        converter._experimental_disable_per_channel = not request.get("per_channel", True)
    if spec.needs_calibration:
        if calibration is None or inputs is None:
            raise ConversionError(f"{spec.name} needs calibration data", "pass --calib DATA")
        converter.representative_dataset = _representative_dataset(calibration, inputs)
    if spec.io_dtype != "float32":
        converter.inference_input_type = getattr(tf, spec.io_dtype)
        converter.inference_output_type = getattr(tf, spec.io_dtype)
    try:
        payload = converter.convert()
    except Exception as exc:
        raise _converter_error(spec.name, exc, built.source_nodes) from exc
    if not payload:
        raise ConversionError(f"the TFLite converter produced no {spec.name} model", "run with --debug")
    return bytes(payload)


def _representative_dataset(calibration: Samples, inputs: list[IOEntry]):
    """Calibration samples in TFLite input order and layout (transposed with the recorded perm)."""

    def generate():
        for index in range(calibration.count):
            sample = calibration.sample(index)
            yield [layout.apply_perm(sample[entry.source_name], entry.perm) for entry in inputs]

    return generate


def _converter_error(variant: str, exc: Exception, source_nodes: dict[str, list[str]]) -> ConversionError:
    """Name the TensorFlow ops the TFLite converter rejected and the source nodes they came from."""
    import re

    text = str(exc)
    ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    ops += sorted(set(re.findall(r"\btf\.(\w+)\b.*not supported", text)) - set(ops))
    if ops:
        described = [_describe_op(op, source_nodes) for op in ops]
        return ConversionError(
            f"{variant}: operator(s) not supported by TFLite builtins: {'; '.join(described)}",
            "replace these operators in the source model; Flex (Select TF) ops would need TensorFlow on the device",
            operators=ops,
            nodes={op: source_nodes.get(op.lower(), []) for op in ops},
        )
    first = next((line.strip() for line in text.splitlines() if "error" in line.lower()), text.strip()[:300])
    return ConversionError(f"{variant}: TFLite conversion failed: {first}"[:500], "run with --debug for the full log")


def _describe_op(op: str, source_nodes: dict[str, list[str]]) -> str:
    nodes = source_nodes.get(op.lower(), [])
    if not nodes:
        return op
    more = f" and {len(nodes) - 3} more" if len(nodes) > 3 else ""
    return f"{op} (node {', '.join(repr(n) for n in nodes[:3])}{more})"


def _io_dtypes(payload: bytes) -> dict[str, list[str]]:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=payload)
    return {
        "input_dtypes": [np.dtype(d["dtype"]).name for d in interpreter.get_input_details()],
        "output_dtypes": [np.dtype(d["dtype"]).name for d in interpreter.get_output_details()],
    }


# --- input/output mapping -----------------------------------------------------------------------------


def _map_io(built: BuiltModel, fp32: bytes, evaluation: Samples) -> tuple[list[IOEntry], list[IOEntry], float]:
    """Pair TFLite inputs/outputs with source tensors and confirm the permutations numerically."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=fp32)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    sources = _pair_inputs(built, details)
    probe = evaluation.sample(0)
    expected = built.reference(probe)
    for perms in _input_perm_choices(built, details, sources):
        converted = _run_fp32(interpreter, details, sources, perms, probe)
        pairs, error = layout.match_outputs(expected, converted)
        if pairs is not None:
            inputs = [_input_entry(d, s, p) for d, s, p in zip(details, sources, perms, strict=True)]
            outputs = [
                _output_entry(d, name, perm, expected[name])
                for d, (name, perm) in zip(interpreter.get_output_details(), pairs, strict=True)
            ]
            return inputs, outputs, error
    raise ConversionError(
        f"the converted model's outputs do not match the source model's (relative error {error:.3g})",
        "the layout conversion went wrong for this graph; try --keep-layout INPUT for non-image inputs, "
        "and report the model",
    )


def _pair_inputs(built: BuiltModel, details: list[dict[str, Any]]) -> list[InputSpec]:
    """The source input behind each TFLite input: by name first, then by shape, then by position."""
    remaining = list(built.inputs)
    paired: list[InputSpec | None] = []
    for detail in details:
        tflite_name = detail["name"]
        match = next((s for s in remaining if _same_name(s.name, tflite_name)), None)
        if match is None:
            shapes = [s for s in remaining if layout.candidate_perms(s.shape, tuple(detail["shape"]))]
            match = shapes[0] if len(shapes) == 1 else None
        if match is not None:
            remaining.remove(match)
        paired.append(match)
    for index, spec in enumerate(paired):
        if spec is None:
            paired[index] = remaining.pop(0)
    return paired  # type: ignore[return-value]


def _same_name(source: str, tflite: str) -> bool:
    import re

    def simple(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9]", "_", name.split(":")[0])

    tflite_simple = simple(tflite)
    return tflite_simple in (simple(source), f"serving_default_{simple(source)}", f"input_{simple(source)}")


def _input_perm_choices(built: BuiltModel, details: list[dict[str, Any]], sources: list[InputSpec]):
    """The builder's expected permutations first, then (single-input models) any other that fits."""
    expected = []
    for detail, spec in zip(details, sources, strict=True):
        perm = built.input_perms.get(spec.name)
        candidates = layout.candidate_perms(spec.shape, tuple(detail["shape"]))
        expected.append(perm if perm in candidates else (candidates[0] if candidates else None))
    yield expected
    if len(details) == 1:
        for perm in layout.candidate_perms(sources[0].shape, tuple(details[0]["shape"])):
            if perm != expected[0]:
                yield [perm]


def _run_fp32(interpreter, details, sources, perms, probe) -> list[np.ndarray]:
    for detail, spec, perm in zip(details, sources, perms, strict=True):
        interpreter.set_tensor(detail["index"], layout.apply_perm(probe[spec.name], perm).astype(detail["dtype"]))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]).copy() for d in interpreter.get_output_details()]


def _input_entry(detail: dict[str, Any], spec: InputSpec, perm: list[int] | None) -> IOEntry:
    return IOEntry(
        detail["index"], detail["name"], [int(d) for d in detail["shape"]], spec.name, list(spec.shape), perm
    )


def _output_entry(detail: dict[str, Any], name: str, perm: list[int] | None, expected: np.ndarray) -> IOEntry:
    return IOEntry(detail["index"], detail["name"], [int(d) for d in detail["shape"]], name, list(expected.shape), perm)


# --- evaluation references ------------------------------------------------------------------------------


def _write_evaluation(built: BuiltModel, evaluation: Samples, path: Path) -> None:
    """Evaluation inputs (source layout), the source model's outputs on them, and labels."""
    outputs: dict[str, list[np.ndarray]] = {}
    for index in range(evaluation.count):
        for name, value in built.reference(evaluation.sample(index)).items():
            outputs.setdefault(name, []).append(np.asarray(value))
    arrays = {f"input:{name}": array for name, array in evaluation.arrays.items()}
    arrays.update({f"reference:{name}": np.concatenate(values) for name, values in outputs.items()})
    if evaluation.labels is not None:
        arrays["labels"] = evaluation.labels
    np.savez(path, **arrays)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
