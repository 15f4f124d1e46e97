"""Predict, from the model file alone, which operators a delegate will take and how the graph splits.

TensorFlow's analyzer reports every model as GPU-compatible in the pip builds (FIELD-NOTES), so
these tables are our own, written from:

- GPU: tensorflow/lite/tools/versioning/gpu_compatibility.cc (the GPU delegate's per-op checks),
- NNAPI: the NNAPI delegate's op coverage by Android API level (nnapi_delegate.cc Validate) and the
  NNAPI operand-type rules (no dynamic shapes, no fp16/int64 activations, signed int8 from API 30),
- Edge TPU: coral.ai "Model requirements" (full 8-bit quantization, static shapes, at most 3
  non-trivial dimensions, supported-op list) and the compiler's rule that mapping stops at the first
  unsupported operator,
- VX / Arm NN: their published operator lists.

Partitions are counted the way TFLite's GraphPartitionHelper groups nodes: alternating subsets of
supported and unsupported nodes, each as large as dependencies allow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from delegates.tflite_model import EDGETPU_CUSTOM_OP, OperatorInfo, SubgraphInfo, TensorInfo, TFLiteModel

# --- tables ------------------------------------------------------------------------------------------

ELEMENTWISE_1 = {"ABS", "CEIL", "COS", "ELU", "EXP", "FLOOR", "GELU", "LOG", "LOGISTIC", "NEG", "RSQRT", "SIGN"}
ELEMENTWISE_1 |= {"SIN", "SQRT", "SQUARE", "TANH"}
ELEMENTWISE_2 = {"ATAN2", "DIV", "EQUAL", "FLOOR_DIV", "FLOOR_MOD", "GREATER", "GREATER_EQUAL", "LOGICAL_AND"}
ELEMENTWISE_2 |= {"LESS", "LESS_EQUAL", "MAXIMUM", "MINIMUM", "NOT_EQUAL", "POW", "SQUARED_DIFFERENCE", "SUB"}
GPU_OPS = ELEMENTWISE_1 | ELEMENTWISE_2
GPU_OPS |= {"ADD", "ADD_N", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CAST", "CONCATENATION", "CONV_2D", "CUMSUM"}
GPU_OPS |= {"DENSIFY", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "EMBEDDING_LOOKUP", "DYNAMIC_UPDATE_SLICE"}
GPU_OPS |= {"FULLY_CONNECTED", "GATHER", "HARD_SWISH", "LSTM", "MAX_POOL_2D", "MEAN", "MUL", "PACK", "ONE_HOT"}
GPU_OPS |= {"QUANTIZE", "RELU_N1_TO_1", "PRELU", "RESHAPE", "SELECT", "SELECT_V2", "SLICE", "SOFTMAX"}
GPU_OPS |= {"SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "STRIDED_SLICE", "TILE", "TRANSPOSE", "TRANSPOSE_CONV"}
GPU_OPS |= {"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RELU", "RELU6", "LEAKY_RELU", "REDUCE_MAX", "REDUCE_MIN"}
GPU_OPS |= {"REDUCE_PROD", "SUM", "PAD", "PADV2", "MIRROR_PAD", "STABLEHLO_CLAMP"}
GPU_CUSTOM_OPS = {"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler"}

# Android API level from which the NNAPI delegate maps each op (NNAPI 1.0=27, 1.1=28, 1.2=29, 1.3=30, FL5=31).
NNAPI_MIN_API: dict[str, int] = {}
for _api, _ops in (
    (27, "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE EMBEDDING_LOOKUP"),
    (27, "FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D LOCAL_RESPONSE_NORMALIZATION"),
    (27, "LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 RELU6 RESHAPE RESIZE_BILINEAR RNN"),
    (27, "SOFTMAX SPACE_TO_DEPTH SVDF TANH"),
    (28, "BATCH_TO_SPACE_ND DIV MEAN PAD SPACE_TO_BATCH_ND SQUEEZE STRIDED_SLICE SUB TRANSPOSE"),
    (29, "ABS ARG_MAX ARG_MIN CAST EQUAL EXP EXPAND_DIMS GATHER GREATER GREATER_EQUAL LESS LESS_EQUAL LOG"),
    (29, "LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOG_SOFTMAX MAXIMUM MINIMUM NEG NOT_EQUAL PADV2 POW PRELU QUANTIZE"),
    (29, "REDUCE_ANY REDUCE_MAX REDUCE_MIN REDUCE_PROD RESIZE_NEAREST_NEIGHBOR RSQRT SELECT SIN SLICE SPLIT"),
    (29, "SPLIT_V SQRT SQUARED_DIFFERENCE SUM TILE TOPK_V2 TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM"),
    (29, "UNIDIRECTIONAL_SEQUENCE_RNN BIDIRECTIONAL_SEQUENCE_LSTM BIDIRECTIONAL_SEQUENCE_RNN"),
    (30, "ELU FILL HARD_SWISH LEAKY_RELU PACK RANK UNPACK"),
    (31, "BATCH_MATMUL MIRROR_PAD REVERSE_V2"),
):
    for _op in _ops.split():
        NNAPI_MIN_API[_op] = _api
NNAPI_INT8_MIN_API = 30  # TENSOR_QUANT8_ASYMM_SIGNED
# Ops the delegate converts int8 -> uint8 for, so signed int8 works on API 29 for them.
NNAPI_INT8_CONVERTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D", "CONCATENATION"}
NNAPI_INT8_CONVERTED |= {"MAX_POOL_2D", "MUL", "RESHAPE", "SOFTMAX", "MEAN", "PAD", "LOGISTIC", "TANH", "TRANSPOSE"}
NNAPI_INT8_CONVERTED |= {"RESIZE_BILINEAR", "RELU", "RELU6", "SUB", "HARD_SWISH", "STRIDED_SLICE", "SLICE"}

EDGETPU_OPS = {"ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS"}
EDGETPU_OPS |= {"FULLY_CONNECTED", "HARD_SWISH", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAXIMUM", "MAX_POOL_2D"}
EDGETPU_OPS |= {"MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN", "RELU"}
EDGETPU_OPS |= {"RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE"}
EDGETPU_OPS |= {"SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE"}
EDGETPU_OPS |= {"TANH", "TRANSPOSE", "TRANSPOSE_CONV", "UNIDIRECTIONAL_SEQUENCE_LSTM"}

# i.MX 8M Plus VX delegate (NXP eIQ TensorFlow Lite user guide, "supported operators"); int8 per-tensor runs best.
VX_OPS = {"ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "FULLY_CONNECTED"}
VX_OPS |= {"HARD_SWISH", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD", "QUANTIZE", "RELU", "RELU6", "RESHAPE"}
VX_OPS |= {"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SOFTMAX", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV"}
VX_OPS |= {"SPLIT", "STRIDED_SLICE", "SLICE", "SQUEEZE", "MAXIMUM", "MINIMUM", "DIV", "LEAKY_RELU", "PRELU", "EXP"}

# Arm NN delegate supported operators (armnn delegate/TensorFlowLiteDelegateSupport.md).
ARMNN_OPS = {"ABS", "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "DIV"}
ARMNN_OPS |= {"EQUAL", "EXP", "FULLY_CONNECTED", "GREATER", "GREATER_EQUAL", "LESS", "LESS_EQUAL", "LOGISTIC"}
ARMNN_OPS |= {"LOG_SOFTMAX", "L2_POOL_2D", "MAXIMUM", "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "NEG", "NOT_EQUAL"}
ARMNN_OPS |= {"QUANTIZE", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RELU", "RELU6", "RSQRT"}
ARMNN_OPS |= {"SOFTMAX", "SQRT", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV", "PAD", "SPLIT", "STRIDED_SLICE"}
ARMNN_OPS |= {"HARD_SWISH", "PACK", "UNPACK", "SQUEEZE", "GATHER", "BATCH_MATMUL", "SLICE", "PRELU", "LEAKY_RELU"}

QUANTIZED = ("int8", "uint8")


# --- per-node context ----------------------------------------------------------------------------------


@dataclass
class Node:
    """One operator with its tensors resolved, for the rule functions."""

    op: OperatorInfo
    graph: SubgraphInfo

    @property
    def name(self) -> str:
        return self.op.name

    def inputs(self) -> list[TensorInfo]:
        return [self.graph.tensors[i] for i in self.op.inputs if i >= 0]

    def runtime_inputs(self) -> list[TensorInfo]:
        return [t for t in self.inputs() if not t.has_data]

    def outputs(self) -> list[TensorInfo]:
        return [self.graph.tensors[i] for i in self.op.outputs if i >= 0]

    def activations(self) -> list[TensorInfo]:
        return self.runtime_inputs() + self.outputs()

    def option(self, field_id: int, kind: str, default: Any = 0) -> Any:
        return self.op.options.scalar(field_id, kind, default) if self.op.options is not None else default


Rule = Callable[[Node], "str | None"]  # None: supported; else the reason it is not


# --- GPU ------------------------------------------------------------------------------------------------


def gpu_rule(node: Node) -> str | None:
    name = node.name
    if node.op.code.is_custom:
        return None if name in GPU_CUSTOM_OPS else f"custom op {name} has no GPU kernel"
    if name not in GPU_OPS:
        return f"{name} is not implemented by the GPU delegate"
    for tensor in node.activations():
        if len(tensor.shape) > 4:
            return f"{tensor.dtype} tensor of rank {len(tensor.shape)} (the GPU delegate handles up to 4-D)"
        if tensor.dtype in ("int64", "string", "complex64", "float64") and name not in ("CAST", "GATHER"):
            return f"{tensor.dtype} tensors are not supported on the GPU"
    check = GPU_CHECKS.get(name)
    return check(node) if check else None


def _gpu_axes_const(node: Node) -> str | None:
    inputs = node.inputs()
    if len(inputs) < 2 or not inputs[1].has_data or inputs[1].dtype != "int32":
        return f"{node.name} needs constant int32 axes on the GPU"
    return None


def _gpu_fully_connected(node: Node) -> str | None:
    if node.option(1, "int8") != 0:
        return "FULLY_CONNECTED with shuffled weights format"
    if node.inputs() and node.inputs()[0].has_data:
        return "FULLY_CONNECTED with a constant input"
    if len(node.runtime_inputs()) > 2:
        return "FULLY_CONNECTED with more than 2 runtime inputs"
    return None


def _gpu_depthwise(node: Node) -> str | None:
    inputs, outputs = node.inputs(), node.outputs()
    if not inputs or not outputs or len(inputs[0].shape) != 4 or len(outputs[0].shape) != 4:
        return "DEPTHWISE_CONV_2D needs 4-D input and output"
    in_c, out_c = inputs[0].shape[3], outputs[0].shape[3]
    if out_c != in_c and in_c != 1:
        return "DEPTHWISE_CONV_2D with depth_multiplier != 1 (and input channels != 1)"
    return None


def _gpu_softmax(node: Node) -> str | None:
    beta = node.option(0, "float32", 1.0)
    return None if beta == 1.0 else f"SOFTMAX with beta {beta:g} (the GPU needs beta 1)"


def _gpu_strided_slice(node: Node) -> str | None:
    masks = {"ellipsis_mask": 2, "new_axis_mask": 3, "shrink_axis_mask": 4}
    for label, field_id in masks.items():
        if node.option(field_id, "int32"):
            return f"STRIDED_SLICE with {label}"
    return _rank_3_or_4(node)


def _rank_3_or_4(node: Node) -> str | None:
    inputs = node.inputs()
    if inputs and len(inputs[0].shape) not in (3, 4):
        return f"{node.name} on a {len(inputs[0].shape)}-D tensor (GPU: 3-D or 4-D only)"
    return None


def _gpu_pad(node: Node) -> str | None:
    if node.name == "MIRROR_PAD" and node.option(0, "int8") != 0:
        return "MIRROR_PAD in SYMMETRIC mode (GPU: REFLECT only)"
    inputs = node.inputs()
    if len(inputs) < 2 or len(inputs[1].shape) != 2 or inputs[1].shape[0] not in (3, 4):
        return f"{node.name} paddings must be 3x2 or 4x2 on the GPU"
    return None


def _gpu_dequantize(node: Node) -> str | None:
    inputs = node.inputs()
    return "DEQUANTIZE from int16" if inputs and inputs[0].dtype == "int16" else None


def _gpu_two_operands(node: Node) -> str | None:
    if len(node.runtime_inputs()) not in (1, 2) or len(node.outputs()) != 1:
        return f"{node.name} with {len(node.runtime_inputs())} runtime inputs (GPU: 1 or 2)"
    return None


GPU_CHECKS: dict[str, Rule] = {
    "MEAN": _gpu_axes_const,
    "SUM": _gpu_axes_const,
    "REDUCE_MAX": _gpu_axes_const,
    "REDUCE_MIN": _gpu_axes_const,
    "REDUCE_PROD": _gpu_axes_const,
    "FULLY_CONNECTED": _gpu_fully_connected,
    "DEPTHWISE_CONV_2D": _gpu_depthwise,
    "SOFTMAX": _gpu_softmax,
    "STRIDED_SLICE": _gpu_strided_slice,
    "SLICE": _rank_3_or_4,
    "PAD": _gpu_pad,
    "PADV2": _gpu_pad,
    "MIRROR_PAD": _gpu_pad,
    "DEQUANTIZE": _gpu_dequantize,
    **{op: _gpu_two_operands for op in ELEMENTWISE_2},
}


# --- NNAPI ---------------------------------------------------------------------------------------------


def nnapi_rule_for(api: int) -> Rule:
    def rule(node: Node) -> str | None:
        name = node.name
        if node.op.code.is_custom:
            return f"custom op {name} is not an NNAPI operation"
        need = NNAPI_MIN_API.get(name)
        if need is None:
            return f"{name} has no NNAPI mapping"
        if need > api:
            return f"{name} needs Android API {need} (device: {api})"
        for tensor in node.activations():
            problem = _nnapi_tensor_problem(tensor, name, api)
            if problem:
                return problem
        return None

    return rule


def _nnapi_tensor_problem(tensor: TensorInfo, op: str, api: int) -> str | None:
    if tensor.dynamic:
        return "dynamic tensor shape (NNAPI needs static shapes)"
    if tensor.dtype in ("float16", "int64", "string", "complex64", "float64"):
        return f"{tensor.dtype} activations are not NNAPI operand types"
    if tensor.dtype == "int16" and op not in ("QUANTIZE", "DEQUANTIZE"):
        return "int16 activations (16x8 quantization) are not supported by the NNAPI delegate"
    if tensor.dtype == "int8" and api < NNAPI_INT8_MIN_API and op not in NNAPI_INT8_CONVERTED:
        return f"signed int8 {op} needs Android API {NNAPI_INT8_MIN_API}"
    if len(tensor.shape) > 4:
        return f"rank-{len(tensor.shape)} tensor (NNAPI operations take up to 4-D)"
    return None


# --- Edge TPU ------------------------------------------------------------------------------------------------


def edgetpu_op_rule(node: Node) -> str | None:
    """Would edgetpu_compiler map this op (ignoring the stop-at-first-unsupported rule)?"""
    if node.name not in EDGETPU_OPS:
        return f"{node.name} is not supported by the Edge TPU"
    for tensor in node.activations():
        if tensor.dtype not in (*QUANTIZED, "int32"):
            return f"{tensor.dtype} tensor (the Edge TPU needs 8-bit quantized tensors)"
        if tensor.dynamic:
            return "dynamic tensor shape (the Edge TPU needs static shapes)"
        if sum(1 for d in tensor.shape if d > 1) > 3:
            return f"tensor {list(tensor.shape)} has more than 3 dimensions larger than 1"
    for tensor in node.inputs():
        if tensor.has_data and tensor.dtype not in (*QUANTIZED, "int32"):
            return f"{tensor.dtype} constant (weights must be quantized)"
    return None


def _table_rule(table: set[str], label: str) -> Rule:
    def rule(node: Node) -> str | None:
        if node.op.code.is_custom:
            return f"custom op {node.name} is not supported by {label}"
        return None if node.name in table else f"{node.name} is not supported by {label}"

    return rule


# --- prediction ----------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    """What a delegate is expected to take from a model."""

    delegate: str
    supported_nodes: int
    total_nodes: int
    partitions: int
    cpu_ops: list[dict[str, Any]] = field(default_factory=list)  # {index, op, reason}
    notes: list[str] = field(default_factory=list)
    blocking: str | None = None  # the delegate would take nothing at all, and why

    @property
    def fully_delegated(self) -> bool:
        return self.total_nodes > 0 and self.supported_nodes == self.total_nodes

    def to_dict(self) -> dict[str, Any]:
        return {
            "delegate": self.delegate,
            "supported_nodes": self.supported_nodes,
            "total_nodes": self.total_nodes,
            "partitions": self.partitions,
            "cpu_ops": self.cpu_ops,
            "fallback_ops": sorted(Counter(c["op"] for c in self.cpu_ops).items()),
            "notes": self.notes,
            "blocking": self.blocking,
        }


def predict(model: TFLiteModel, delegate: str, *, android_api: int = 30) -> Prediction:
    """Predicted delegation of the main subgraph for one delegate."""
    predictor = PREDICTORS.get(delegate)
    if predictor is None:
        raise ValueError(f"no compatibility table for {delegate!r}; have {', '.join(PREDICTORS)}")
    return predictor(model, android_api)


def _from_rule(delegate: str, rule: Rule, model: TFLiteModel) -> Prediction:
    graph = model.main
    verdicts = [rule(Node(op, graph)) for op in graph.operators]
    return _prediction(delegate, graph, verdicts)


def _prediction(delegate: str, graph: SubgraphInfo, verdicts: list[str | None]) -> Prediction:
    supported = [v is None for v in verdicts]
    cpu = [
        {"index": op.index, "op": op.name, "reason": reason}
        for op, reason in zip(graph.operators, verdicts)  # noqa: B905 (same length by construction)
        if reason is not None
    ]
    return Prediction(delegate, sum(supported), len(verdicts), count_partitions(graph, supported), cpu)


def _predict_gpu(model: TFLiteModel, android_api: int) -> Prediction:
    prediction = _from_rule("gpu", gpu_rule, model)
    if is_full_integer(model):
        prediction.notes.append("int8 model: the GPU computes in float (needs the quantized option, on by default)")
    return prediction


def _predict_nnapi(model: TFLiteModel, android_api: int) -> Prediction:
    prediction = _from_rule("nnapi", nnapi_rule_for(android_api), model)
    prediction.notes.append(f"assuming Android API {android_api}; vendor drivers may still reject supported ops")
    return prediction


def _predict_edgetpu(model: TFLiteModel, android_api: int) -> Prediction:
    graph = model.main
    if edgetpu_compiled(model):
        verdicts = [
            None if op.name == EDGETPU_CUSTOM_OP else "left on the CPU by edgetpu_compiler" for op in graph.operators
        ]
        prediction = _prediction("edgetpu", graph, verdicts)
        prediction.notes.append("compiled for the Edge TPU: edgetpu-custom-op nodes run on the TPU")
        return prediction
    verdicts = _edgetpu_compiler_mapping(graph)
    prediction = _prediction("edgetpu", graph, verdicts)
    prediction.blocking = "not compiled for the Edge TPU: run edgetpu_compiler on this model first"
    if not is_full_integer(model):
        prediction.blocking = (
            "not fully int8-quantized: the Edge TPU needs a full-integer model, compiled by edgetpu_compiler"
        )
    prediction.notes.append(
        "counts are what edgetpu_compiler would map; the compiler stops at the first unsupported op"
    )
    return prediction


def _edgetpu_compiler_mapping(graph: SubgraphInfo) -> list[str | None]:
    """Ops up to the first unsupported one map to the TPU; everything after stays on the CPU."""
    verdicts: list[str | None] = []
    stopped_at = None
    for op in graph.operators:
        if stopped_at is not None:
            verdicts.append(f"after the first unsupported op ({stopped_at}): the compiler maps nothing later")
            continue
        reason = edgetpu_op_rule(Node(op, graph))
        if reason is not None and op.name in ("QUANTIZE", "DEQUANTIZE") and op.index in (0, len(graph.operators) - 1):
            verdicts.append(reason)  # float I/O conversion at the edges stays on the CPU without cutting the graph
            continue
        verdicts.append(reason)
        if reason is not None:
            stopped_at = f"#{op.index} {op.name}"
    return verdicts


def _predict_table(label: str, table: set[str]) -> Callable[[TFLiteModel, int], Prediction]:
    def predictor(model: TFLiteModel, android_api: int) -> Prediction:
        return _from_rule(label, _table_rule(table, label), model)

    return predictor


PREDICTORS: dict[str, Callable[[TFLiteModel, int], Prediction]] = {
    "gpu": _predict_gpu,
    "nnapi": _predict_nnapi,
    "edgetpu": _predict_edgetpu,
    "vx": _predict_table("vx", VX_OPS),
    "armnn": _predict_table("armnn", ARMNN_OPS),
}


def count_partitions(graph: SubgraphInfo, supported: list[bool]) -> int:
    """Number of delegated subsets, grouping as TFLite's partitioner does."""
    produced_by = {t: op.index for op in graph.operators for t in op.outputs if t >= 0}
    ready = {t.index for t in graph.tensors if t.index not in produced_by}
    remaining = list(range(len(graph.operators)))
    partitions = 0
    kind: bool | None = None
    while remaining:
        runnable = [i for i in remaining if all(t < 0 or t in ready for t in graph.operators[i].inputs)]
        if not runnable:
            break  # a cycle or a bad graph: stop counting rather than loop
        if kind is None or not any(supported[i] == kind for i in runnable):
            kind = supported[runnable[0]] if kind is None else not kind
        taken = _grow_subset(graph, supported, remaining, ready, kind)
        if kind and taken:
            partitions += 1
        kind = not kind
    return partitions


def _grow_subset(graph: SubgraphInfo, supported: list[bool], remaining: list[int], ready: set[int], kind: bool) -> int:
    taken = 0
    progress = True
    while progress:
        progress = False
        for i in list(remaining):
            op = graph.operators[i]
            if supported[i] == kind and all(t < 0 or t in ready for t in op.inputs):
                remaining.remove(i)
                ready.update(t for t in op.outputs if t >= 0)
                taken += 1
                progress = True
    return taken


# --- model-level facts -------------------------------------------------------------------------------------


def edgetpu_compiled(model: TFLiteModel) -> bool:
    return any(code.name == EDGETPU_CUSTOM_OP for code in model.operator_codes)


def is_full_integer(model: TFLiteModel) -> bool:
    """Every compute op (all but the float I/O QUANTIZE/DEQUANTIZE) produces 8-bit quantized tensors."""
    graph = model.main
    compute = [op for op in graph.operators if op.name not in ("QUANTIZE", "DEQUANTIZE")]
    if not compute:
        return False
    for op in compute:
        outs = [graph.tensors[i] for i in op.outputs if i >= 0]
        if not all(t.dtype in QUANTIZED or (t.dtype == "int32" and not t.quantization) for t in outs):
            return False
    return any(t.dtype in QUANTIZED for op in compute for t in (graph.tensors[i] for i in op.outputs if i >= 0))


def requirement_problem(spec: Any, model: TFLiteModel) -> str | None:
    """Why a delegate's model requirements rule this model out, or None."""
    needs = spec.requirements
    if needs.edgetpu_compiled and not edgetpu_compiled(model):
        if not is_full_integer(model):
            return "model is not fully int8-quantized and not compiled for the Edge TPU (edgetpu_compiler)"
        return "model is not compiled for the Edge TPU: run edgetpu_compiler on it first"
    if needs.integer_only and not is_full_integer(model):
        return f"{spec.name} runs only fully int8/uint8-quantized models"
    return None


def guess_variant(model: TFLiteModel) -> str:
    """fp32 | fp16 | dynamic | int8 | int8-full | int16x8, from tensor types alone."""
    graph = model.main
    io = [graph.tensors[i] for i in (*graph.inputs, *graph.outputs)]
    activations = [graph.tensors[i] for op in graph.operators for i in op.outputs if i >= 0]
    weights = [t for t in graph.tensors if t.has_data]
    if any(t.dtype == "int16" and t.quantization for t in activations):
        return "int16x8"
    if is_full_integer(model):
        return "int8-full" if all(t.dtype in QUANTIZED for t in io) else "int8"
    if any(t.dtype in QUANTIZED for t in weights):
        return "dynamic"
    if any(t.dtype == "float16" for t in weights):
        return "fp16"
    return "fp32"
