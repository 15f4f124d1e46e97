"""Exact ONNX graph rewrites that steer onnx2tf around patterns it converts wrongly.

Each fix is a small spec (STYLE.md #1): the onnx2tf behaviour it works around, a test for the node,
and a rewrite into an equivalent graph. They run on edgetk's private copy of the model before
onnx2tf sees it; validation still compares against the untouched original in onnxruntime, so a
wrong rewrite could not go unnoticed. The fixes applied are listed in the conversion report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GraphFix:
    name: str
    why: str
    applies: Callable[[Any, Any], bool]  # (node, graph context) -> bool
    rewrite: Callable[[Any, Any], list[Any]]  # (node, graph context) -> replacement nodes


class GraphContext:
    """Shapes, producers and initializers of a model, plus unique names for new tensors."""

    def __init__(self, model: Any) -> None:
        import onnx

        inferred = onnx.shape_inference.infer_shapes(model)
        infos = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        self.shapes = {
            vi.name: [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
            for vi in infos
        }
        self.producers = {out: node for node in model.graph.node for out in node.output}
        self.initializers = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
        self.new_initializers: list[Any] = []
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self._counter = 0

    def unique(self, base: str) -> str:
        self._counter += 1
        return f"{base}__edgetk_fix{self._counter}"

    def constant(self, base: str, value: np.ndarray) -> str:
        import onnx

        name = self.unique(base)
        self.new_initializers.append(onnx.numpy_helper.from_array(value, name))
        return name

    def static_shape(self, name: str) -> list[int] | None:
        shape = self.shapes.get(name)
        return shape if shape and all(isinstance(d, int) and d > 0 for d in shape) else None


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _pooling_geometry(node: Any, context: GraphContext) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """(spatial input shape, kernel, strides, pads) of a 2-D pooling node with explicit pads."""
    shape = context.static_shape(node.input[0])
    if shape is None or len(shape) != 4 or _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    if _attr(node, "ceil_mode", 0) or any(d != 1 for d in _attr(node, "dilations", [1, 1])):
        return None
    kernel = list(_attr(node, "kernel_shape", []))
    strides = list(_attr(node, "strides", [1, 1]))
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    if len(kernel) != 2 or not any(pads):
        return None
    return shape[2:], kernel, strides, pads


def _same_pads(spatial: list[int], kernel: list[int], strides: list[int]) -> list[int]:
    """The pads TensorFlow's SAME mode uses (begin..., end...), as onnx2tf computes them."""
    begins, ends = [], []
    for size, k, s in zip(spatial, kernel, strides, strict=True):
        out = math.floor((size - 1) / s) + 1
        total = max((out - 1) * s + k - size, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return begins + ends


# --- MaxPool with padding TensorFlow's SAME mode cannot express --------------------------------------


def _maxpool_needs_edge_pad(node: Any, context: GraphContext) -> bool:
    if node.op_type != "MaxPool" or len(node.output) != 1:
        return False
    geometry = _pooling_geometry(node, context)
    if geometry is None:
        return False
    spatial, kernel, strides, pads = geometry
    return pads != _same_pads(spatial, kernel, strides) and all(p < k for p, k in zip(pads, kernel * 2, strict=True))


def _maxpool_edge_pad(node: Any, context: GraphContext) -> list[Any]:
    """Pad(x, mode=edge) + MaxPool without pads.

    Exact for any input: with pads smaller than the kernel, every window that covers a padded cell
    also covers the border cell it copies, so the copy never changes a maximum. A constant pad
    would not do: onnxsim folds any constant Pad back into the MaxPool.
    """
    import onnx

    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    full = [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]
    padded = context.unique(node.input[0])
    pad_name = context.unique(node.name or "pad")
    if context.opset < 11:  # pads were an attribute before opset 11
        pad = onnx.helper.make_node("Pad", [node.input[0]], [padded], name=pad_name, pads=full, mode="edge")
    else:
        pads_name = context.constant(node.name or "maxpool", np.asarray(full, dtype=np.int64))
        pad = onnx.helper.make_node("Pad", [node.input[0], pads_name], [padded], name=pad_name, mode="edge")
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.name != "pads"}
    pool = onnx.helper.make_node("MaxPool", [padded], list(node.output), name=node.name, **attributes)
    return [pad, pool]


# --- AveragePool excluding padding where every window has the same count --------------------------------


def _uniform_valid_counts(node: Any, context: GraphContext) -> tuple[int, int] | None:
    """(valid count, kernel area) when every output window covers the same number of real cells."""
    if node.op_type != "AveragePool" or _attr(node, "count_include_pad", 0):
        return None
    geometry = _pooling_geometry(node, context)
    if geometry is None:
        return None
    spatial, kernel, strides, pads = geometry
    per_axis = []
    for axis in range(2):
        size, k, s = spatial[axis], kernel[axis], strides[axis]
        begin, end = pads[axis], pads[axis + 2]
        valid = np.concatenate([np.zeros(begin), np.ones(size), np.zeros(end)])
        outputs = (size + begin + end - k) // s + 1
        per_axis.append({int(valid[i * s : i * s + k].sum()) for i in range(outputs)})
    if any(len(counts) != 1 for counts in per_axis):
        return None  # onnx2tf's own per-position multiplier handles non-uniform windows
    count = per_axis[0].pop() * per_axis[1].pop()
    area = kernel[0] * kernel[1]
    return (count, area) if 0 < count < area else None


def _averagepool_uniform(node: Any, context: GraphContext) -> bool:
    return _uniform_valid_counts(node, context) is not None


def _averagepool_rescaled(node: Any, context: GraphContext) -> list[Any]:
    """AveragePool(count_include_pad=1) * area/count: the same values, divided by the real count."""
    import onnx

    count, area = _uniform_valid_counts(node, context) or (1, 1)
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.name != "count_include_pad"}
    summed = context.unique(node.output[0])
    pool = onnx.helper.make_node(
        "AveragePool", list(node.input), [summed], name=node.name, count_include_pad=1, **attributes
    )
    factor = context.constant(node.name or "avgpool", np.asarray(area / count, dtype=np.float32))
    scale = onnx.helper.make_node("Mul", [summed, factor], list(node.output), name=context.unique(node.name or "mul"))
    return [pool, scale]


FIXES: dict[str, GraphFix] = {
    fix.name: fix
    for fix in (
        GraphFix(
            "maxpool-edge-pad",
            "onnx2tf pads MaxPool with float32's lowest value where SAME padding does not fit; the "
            "int8 calibrator then sees a range of 1e38 and every quantized output becomes constant",
            _maxpool_needs_edge_pad,
            _maxpool_edge_pad,
        ),
        GraphFix(
            "averagepool-uniform-count",
            "onnx2tf skips the count_include_pad=0 correction when all windows have the same number "
            "of padded cells (e.g. inception_v1's final pool), dividing by the full kernel area",
            _averagepool_uniform,
            _averagepool_rescaled,
        ),
    )
}


def apply_fixes(model: Any) -> list[dict[str, Any]]:
    """Rewrite the model in place; return [{fix, node}] for every rewrite made."""
    context = GraphContext(model)
    applied: list[dict[str, Any]] = []
    rebuilt: list[Any] = []
    for node in model.graph.node:
        fix = next((f for f in FIXES.values() if f.applies(node, context)), None)
        if fix is None:
            rebuilt.append(node)
            continue
        rebuilt.extend(fix.rewrite(node, context))
        applied.append({"fix": fix.name, "node": node.name})
    if applied:
        del model.graph.node[:]
        model.graph.node.extend(rebuilt)
        model.graph.initializer.extend(context.new_initializers)
    return applied
