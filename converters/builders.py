"""Turn a source model into a TensorFlow function plus a reference that computes its true outputs.

Runs only inside the conversion worker (TensorFlow and onnx2tf are imported here). One builder per
source format, named by `converters.sources.FORMATS[...].builder`.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters.calibration import InputSpec
from toolkit.errors import BadInputError, ConfigError, ConversionError

Arrays = dict[str, np.ndarray]


@dataclass
class OutputSpec:
    name: str
    shape: tuple[int | None, ...]


@dataclass
class BuiltModel:
    """What the worker needs from any source: a way to make TFLite converters, IO specs, a reference."""

    make_converter: Callable[[], Any]  # -> a fresh tf.lite.TFLiteConverter
    inputs: list[InputSpec]  # in the source layout
    outputs: list[OutputSpec]
    reference: Callable[[Arrays], Arrays]  # source model outputs for one sample (batch 1)
    reference_engine: str
    # The permutation from the source layout to the TF model's layout that the builder expects for
    # each input (None: unchanged). The worker verifies it numerically before trusting it.
    input_perms: dict[str, list[int] | None]
    converter: dict[str, str] = field(default_factory=dict)
    log: str = ""
    # Source node names by lower-cased operator type, to name the nodes behind a rejected TF op.
    source_nodes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class BuildRequest:
    source: Path
    workdir: Path
    # NHWC sample images for onnx2tf's internal accuracy check, given the model's inputs (or None).
    probe_images: Callable[[list[InputSpec]], np.ndarray | None]
    input_shapes: dict[str, list[int]]  # user overrides for dynamic dimensions
    keep_layout: list[str]  # inputs whose layout must not change


def tf_dtype_name(dtype: Any) -> str:
    return np.dtype(dtype.as_numpy_dtype if hasattr(dtype, "as_numpy_dtype") else dtype).name


# --- ONNX ------------------------------------------------------------------------------------------


def build_onnx(request: BuildRequest) -> BuiltModel:
    """ONNX through onnx2tf: NCHW graph in, NHWC Keras model out, onnxruntime as the reference."""
    import onnx

    model = _load_onnx(request.source)
    check_onnx_operators(model)
    inputs = _onnx_inputs(model, request.input_shapes)
    outputs = [OutputSpec(o.name, _onnx_shape(o)) for o in model.graph.output]
    # onnx2tf rewrites its input file in place (onnxsim output, cleared shapes): give it a copy,
    # with exact rewrites of the patterns it is known to convert wrongly.
    from converters.onnx_fixes import apply_fixes

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    applied = apply_fixes(fixed)
    copy = request.workdir / "onnx2tf_input.onnx"
    _save_onnx_copy(onnx, fixed, copy)
    reference = _onnxruntime_reference(request.source, inputs)
    keep = sorted({spec.name for spec in inputs if len(spec.shape) != 4} | set(request.keep_layout))
    keras_model, log = _run_onnx2tf(copy, request, inputs, keep, fixed)
    perms = {spec.name: (None if spec.name in keep else [0, 2, 3, 1]) for spec in inputs}
    import onnx2tf

    return BuiltModel(
        make_converter=_keras_converter_factory(keras_model),
        inputs=inputs,
        outputs=outputs,
        reference=reference,
        reference_engine="onnxruntime",
        input_perms=perms,
        converter={"tool": "onnx2tf", "version": onnx2tf.__version__, **_tf_versions(), **_fix_summary(applied)},
        log=log,
        source_nodes=_nodes_by_type(model),
    )


def _load_onnx(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path))  # also loads external data stored beside the model
    except FileNotFoundError as exc:
        raise BadInputError(
            f"{path}: external data file missing: {exc.filename or exc}",
            "keep the .data/.bin files the model references next to it",
        ) from exc
    except Exception as exc:
        raise BadInputError(f"{path}: cannot read ONNX model: {exc}", "re-export the model") from exc


def onnx_supported_operators() -> set[str]:
    """Operator types onnx2tf implements: one module per op in onnx2tf/ops."""
    import importlib.util

    spec = importlib.util.find_spec("onnx2tf")
    if spec is None or not spec.submodule_search_locations:
        return set()
    ops_dir = Path(next(iter(spec.submodule_search_locations))) / "ops"
    return {p.stem for p in ops_dir.glob("*.py") if not p.stem.startswith("_")}


def check_onnx_operators(model: Any) -> None:
    """ConversionError naming every node (type and name) whose operator onnx2tf cannot convert."""
    supported = onnx_supported_operators()
    unsupported = [
        (node.op_type, node.name or f"#{index}", node.domain)
        for index, node in enumerate(_all_nodes(model.graph))
        if node.op_type not in supported or node.domain not in ("", "ai.onnx")
    ]
    if not unsupported:
        return
    shown = ", ".join(f"{op} (node {name!r}{f', domain {dom}' if dom else ''})" for op, name, dom in unsupported[:5])
    more = f" and {len(unsupported) - 5} more" if len(unsupported) > 5 else ""
    raise ConversionError(
        f"unsupported operator(s): {shown}{more}",
        "re-export the model without these operators (e.g. a different opset or export option), "
        "or replace them in the source model",
        operators=[{"op_type": op, "node": name, "domain": dom} for op, name, dom in unsupported],
    )


def _all_nodes(graph: Any) -> list[Any]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.g is not None and len(attribute.g.node):
                nodes.extend(_all_nodes(attribute.g))
            for sub in attribute.graphs:
                nodes.extend(_all_nodes(sub))
    return nodes


def _fix_summary(applied: list[dict[str, Any]]) -> dict[str, Any]:
    """{"graph_fixes": {fix name: count}} when edgetk rewrote parts of the graph for onnx2tf."""
    counts: dict[str, int] = {}
    for item in applied:
        counts[item["fix"]] = counts.get(item["fix"], 0) + 1
    return {"graph_fixes": counts} if counts else {}


def _nodes_by_type(model: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for index, node in enumerate(_all_nodes(model.graph)):
        found.setdefault(node.op_type.lower(), []).append(node.name or f"#{index}")
    return found


_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16"}


def _onnx_shape(value_info: Any) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)


def _onnx_inputs(model: Any, overrides: dict[str, list[int]]) -> list[InputSpec]:
    initializers = {t.name for t in model.graph.initializer}
    specs = []
    for value_info in model.graph.input:
        if value_info.name in initializers:
            continue
        shape = _onnx_shape(value_info)
        if value_info.name in overrides:
            shape = tuple(overrides[value_info.name])
        elif shape and shape[0] is None:
            shape = (1, *shape[1:])  # TFLite models run one sample at a time
        if any(d is None for d in shape):
            raise ConfigError(
                f"input {value_info.name!r} has dynamic dimensions {list(shape)}",
                f"fix them with --input-shape {value_info.name}:" + ",".join(str(d or 1) for d in shape),
            )
        dtype = _ONNX_DTYPES.get(value_info.type.tensor_type.elem_type, "float32")
        specs.append(InputSpec(value_info.name, shape, dtype))
    unknown = set(overrides) - {s.name for s in specs}
    if unknown:
        raise ConfigError(
            f"--input-shape names unknown input(s) {sorted(unknown)}", f"inputs: {[s.name for s in specs]}"
        )
    return specs


def _save_onnx_copy(onnx: Any, model: Any, path: Path) -> None:
    large = model.ByteSize() > 1_800_000_000
    onnx.save(model, str(path), save_as_external_data=large, location=path.name + ".data" if large else None)


def _onnxruntime_reference(path: Path, inputs: list[InputSpec]) -> Callable[[Arrays], Arrays]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise ConversionError(
            f"onnxruntime {onnxruntime.__version__}, which computes the reference outputs, cannot load "
            f"the model: {reason[-300:]}",
            "re-export the model with an IR version/opset this onnxruntime supports",
        ) from exc
    names = [o.name for o in session.get_outputs()]

    def run(feed: Arrays) -> Arrays:
        return dict(zip(names, session.run(names, {spec.name: feed[spec.name] for spec in inputs}), strict=True))

    return run


def _run_onnx2tf(copy: Path, request: BuildRequest, inputs: list[InputSpec], keep: list[str], model: Any):
    import onnx2tf
    import onnx2tf.onnx2tf as onnx2tf_core

    # onnx2tf downloads sample images from the web whenever every input is a 3-channel image; it only
    # uses them as dummy inputs for its own accuracy checks, so hand it ours instead (offline).
    samples = request.probe_images(inputs)
    onnx2tf_core.download_test_image_data = lambda: _probe_images_or_default(samples)
    log = io.StringIO()
    overrides = [f"{s.name}:{','.join(str(d) for d in s.shape)}" for s in inputs]
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            keras_model = onnx2tf.convert(
                input_onnx_file_path=str(copy),
                output_folder_path=str(request.workdir / "onnx2tf"),
                disable_model_save=True,
                non_verbose=True,
                overwrite_input_shape=overrides,
                keep_shape_absolutely_input_names=keep or None,
            )
    except SystemExit as exc:
        raise _onnx2tf_error(log.getvalue(), model, None) from exc
    except Exception as exc:
        raise _onnx2tf_error(log.getvalue(), model, exc) from exc
    if keras_model is None:
        raise _onnx2tf_error(log.getvalue(), model, None)
    return keras_model, log.getvalue()


def _probe_images_or_default(samples: np.ndarray | None) -> np.ndarray:
    if samples is not None and samples.ndim == 4 and samples.shape[-1] == 3:
        return samples.astype(np.float32)
    return np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _onnx2tf_error(log: str, model: Any, exc: BaseException | None) -> ConversionError:
    """Name the ONNX node onnx2tf failed on (type and name) and keep the last lines of its log."""
    text = _ANSI.sub("", log)
    node_name = getattr(exc, "onnx_op_name", None)
    if node_name is None:
        found = re.findall(r"onnx_op_name:\s*(\S+)", text)
        node_name = found[-1] if found else None
    op_type = next((n.op_type for n in _all_nodes(model.graph) if n.name == node_name), None)
    reason = str(exc).strip().splitlines()[-1] if exc is not None and str(exc).strip() else "onnx2tf stopped"
    where = f" at {op_type} node {node_name!r}" if node_name else ""
    tail = [line for line in text.strip().splitlines() if line.strip()][-15:]
    return ConversionError(
        f"onnx2tf failed{where}: {reason}"[:400],
        "run with --debug for onnx2tf's log; --keep-layout INPUT keeps an input's layout, "
        "--input-shape fixes dynamic dimensions",
        op_type=op_type,
        node=node_name,
        log_tail=tail,
    )


# --- Keras -----------------------------------------------------------------------------------------


def build_keras(request: BuildRequest) -> BuiltModel:
    """A .keras or .h5 model: Keras 3 files load with keras, Keras 2 files with tf_keras."""
    model, engine = _load_keras(request.source, request.workdir)
    inputs = [
        InputSpec(_clean_name(t.name), _batch_one(t.shape), tf_dtype_name(t.dtype)) for t in _as_list(model.inputs)
    ]
    output_names = list(getattr(model, "output_names", None) or [_clean_name(t.name) for t in _as_list(model.outputs)])
    outputs = [
        OutputSpec(name, _batch_one(t.shape)) for name, t in zip(output_names, _as_list(model.outputs), strict=True)
    ]
    import tensorflow as tf

    def call(*tensors):
        return model(list(tensors) if len(tensors) > 1 else tensors[0], training=False)

    def reference(feed: Arrays) -> Arrays:
        args = [tf.constant(feed[spec.name]) for spec in inputs]
        result = tf.nest.flatten(call(*args))
        return {name: np.asarray(value) for name, value in zip(output_names, result, strict=True)}

    return BuiltModel(
        make_converter=_function_converter_factory(call, inputs),
        inputs=inputs,
        outputs=outputs,
        reference=reference,
        reference_engine=f"tensorflow ({engine})",
        input_perms={spec.name: None for spec in inputs},
        converter={"tool": "tensorflow", **_tf_versions()},
    )


def _load_keras(path: Path, workdir: Path) -> tuple[Any, str]:
    version = _keras_file_version(path)
    try:
        if version.startswith("2."):
            import tf_keras

            return tf_keras.models.load_model(str(path), compile=False), f"tf_keras {tf_keras.__version__}"
        import keras

        # Keras 3 recognises formats by extension; a correctly detected file may be named otherwise.
        suffix = ".h5" if path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n" else ".keras"
        if path.suffix.lower() not in (suffix, ".hdf5"):
            renamed = workdir / f"source{suffix}"
            shutil.copyfile(path, renamed)
            return keras.saving.load_model(str(renamed), compile=False), f"keras {keras.__version__}"
        return keras.saving.load_model(str(path), compile=False), f"keras {keras.__version__}"
    except (ValueError, OSError, TypeError, KeyError) as exc:
        raise BadInputError(
            f"{path}: cannot load Keras model: {exc}"[:400], "re-save the model with model.save()"
        ) from exc


def _keras_file_version(path: Path) -> str:
    """The Keras version that wrote the file ('2.x' from tf_keras/Keras 2, '3.x' from Keras 3)."""
    head = path.read_bytes()[:8]
    try:
        if head.startswith(b"PK"):
            with zipfile.ZipFile(path) as archive:
                if "metadata.json" in archive.namelist():
                    return str(json.loads(archive.read("metadata.json")).get("keras_version", "3"))
                return "3"
        import h5py

        with h5py.File(path, "r") as handle:
            value = handle.attrs.get("keras_version", "2")
            return value.decode() if isinstance(value, bytes) else str(value)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{path}: corrupt Keras file: {exc}", "re-save the model") from exc


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _clean_name(name: str) -> str:
    return name.split(":")[0]


def _tf_safe(name: str) -> str:
    """A name TensorFlow accepts for a placeholder (TFLite tensor names come from it)."""
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)
    return safe if safe[:1].isalpha() else f"input_{safe}"


def _batch_one(shape: Any) -> tuple[int | None, ...]:
    dims = [None if d is None else int(d) for d in (shape.as_list() if hasattr(shape, "as_list") else shape)]
    if dims and dims[0] is None:
        dims[0] = 1
    return tuple(dims)


# --- SavedModel ------------------------------------------------------------------------------------


def build_savedmodel(request: BuildRequest) -> BuiltModel:
    """A SavedModel directory: its serving signature is converted and used as the reference."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(request.source))
    except Exception as exc:
        raise BadInputError(f"{request.source}: cannot load SavedModel: {exc}"[:400], "re-export it") from exc
    if not loaded.signatures:
        raise BadInputError(f"{request.source}: the SavedModel has no signatures", "export it with a serving signature")
    key = "serving_default" if "serving_default" in loaded.signatures else sorted(loaded.signatures)[0]
    signature = loaded.signatures[key]
    specs = signature.structured_input_signature[1]
    inputs = [
        InputSpec(name, _batch_one(spec.shape), tf_dtype_name(spec.dtype)) for name, spec in sorted(specs.items())
    ]
    outputs = [OutputSpec(name, _batch_one(spec.shape)) for name, spec in sorted(signature.structured_outputs.items())]

    def reference(feed: Arrays) -> Arrays:
        result = signature(**{spec.name: tf.constant(feed[spec.name]) for spec in inputs})
        return {name: np.asarray(value) for name, value in result.items()}

    def make_converter():
        converter = tf.lite.TFLiteConverter.from_saved_model(str(request.source), signature_keys=[key])
        return converter

    return BuiltModel(
        make_converter=make_converter,
        inputs=inputs,
        outputs=outputs,
        reference=reference,
        reference_engine="tensorflow (SavedModel)",
        input_perms={spec.name: None for spec in inputs},
        converter={"tool": "tensorflow", **_tf_versions()},
    )


# --- shared ----------------------------------------------------------------------------------------


def _keras_converter_factory(keras_model: Any) -> Callable[[], Any]:
    import tensorflow as tf

    specs = [tf.TensorSpec(t.shape, t.dtype, _tf_safe(_clean_name(t.name))) for t in keras_model.inputs]
    function = tf.function(lambda *tensors: keras_model(tensors), input_signature=specs)
    concrete = function.get_concrete_function()

    def make():
        # Without a trackable object the converter freezes the function directly instead of saving
        # the whole Keras model as a SavedModel first (0.3 s instead of 4 s for squeezenet).
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        converter.experimental_lower_to_saved_model = False
        return converter

    return make


def _function_converter_factory(call: Callable[..., Any], inputs: list[InputSpec]) -> Callable[[], Any]:
    import tensorflow as tf

    specs = [tf.TensorSpec(spec.shape, spec.dtype, _tf_safe(spec.name)) for spec in inputs]
    concrete = tf.function(call, input_signature=specs).get_concrete_function()

    def make():
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        converter.experimental_lower_to_saved_model = False
        return converter

    return make


def _tf_versions() -> dict[str, str]:
    import tensorflow as tf

    return {"tensorflow": tf.__version__}
