"""Read a .tflite file's structure without TensorFlow: operators, tensors, buffers, metadata.

Field ids follow TensorFlow Lite's schema.fbs (cross-checked against ai_edge_litert's generated
schema module in tests/test_inspect_flatbuffer.py). Parsing walks and bounds-checks every table a
runtime touches, so `parse_model` doubles as the verifier that keeps truncated or corrupted files
away from runtimes that would segfault on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from delegates.flatbuf import Buffer, FlatbufferError, Table
from toolkit.errors import BadInputError

ModelSource = Union[str, Path, bytes, bytearray, memoryview]  # noqa: UP007 (runtime alias, Python 3.9)

FILE_IDENTIFIER = b"TFL3"

# BuiltinOperator enum values are positions in this list (schema.fbs order).
BUILTIN_OPERATORS: tuple[str, ...] = tuple(
    [
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEPTH_TO_SPACE",
        "DEQUANTIZE",
        "EMBEDDING_LOOKUP",
        "FLOOR",
        "FULLY_CONNECTED",
        "HASHTABLE_LOOKUP",
        "L2_NORMALIZATION",
        "L2_POOL_2D",
        "LOCAL_RESPONSE_NORMALIZATION",
        "LOGISTIC",
        "LSH_PROJECTION",
        "LSTM",
        "MAX_POOL_2D",
        "MUL",
        "RELU",
        "RELU_N1_TO_1",
        "RELU6",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RNN",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SVDF",
        "TANH",
        "CONCAT_EMBEDDINGS",
        "SKIP_GRAM",
        "CALL",
        "CUSTOM",
        "EMBEDDING_LOOKUP_SPARSE",
        "PAD",
        "UNIDIRECTIONAL_SEQUENCE_RNN",
        "GATHER",
        "BATCH_TO_SPACE_ND",
        "SPACE_TO_BATCH_ND",
        "TRANSPOSE",
        "MEAN",
        "SUB",
        "DIV",
        "SQUEEZE",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "STRIDED_SLICE",
        "BIDIRECTIONAL_SEQUENCE_RNN",
        "EXP",
        "TOPK_V2",
        "SPLIT",
        "LOG_SOFTMAX",
        "DELEGATE",
        "BIDIRECTIONAL_SEQUENCE_LSTM",
        "CAST",
        "PRELU",
        "MAXIMUM",
        "ARG_MAX",
        "MINIMUM",
        "LESS",
        "NEG",
        "PADV2",
        "GREATER",
        "GREATER_EQUAL",
        "LESS_EQUAL",
        "SELECT",
        "SLICE",
        "SIN",
        "TRANSPOSE_CONV",
        "SPARSE_TO_DENSE",
        "TILE",
        "EXPAND_DIMS",
        "EQUAL",
        "NOT_EQUAL",
        "LOG",
        "SUM",
        "SQRT",
        "RSQRT",
        "SHAPE",
        "POW",
        "ARG_MIN",
        "FAKE_QUANT",
        "REDUCE_PROD",
        "REDUCE_MAX",
        "PACK",
        "LOGICAL_OR",
        "ONE_HOT",
        "LOGICAL_AND",
        "LOGICAL_NOT",
        "UNPACK",
        "REDUCE_MIN",
        "FLOOR_DIV",
        "REDUCE_ANY",
        "SQUARE",
        "ZEROS_LIKE",
        "FILL",
        "FLOOR_MOD",
        "RANGE",
        "RESIZE_NEAREST_NEIGHBOR",
        "LEAKY_RELU",
        "SQUARED_DIFFERENCE",
        "MIRROR_PAD",
        "ABS",
        "SPLIT_V",
        "UNIQUE",
        "CEIL",
        "REVERSE_V2",
        "ADD_N",
        "GATHER_ND",
        "COS",
        "WHERE",
        "RANK",
        "ELU",
        "REVERSE_SEQUENCE",
        "MATRIX_DIAG",
        "QUANTIZE",
        "MATRIX_SET_DIAG",
        "ROUND",
        "HARD_SWISH",
        "IF",
        "WHILE",
        "NON_MAX_SUPPRESSION_V4",
        "NON_MAX_SUPPRESSION_V5",
        "SCATTER_ND",
        "SELECT_V2",
        "DENSIFY",
        "SEGMENT_SUM",
        "BATCH_MATMUL",
        "PLACEHOLDER_FOR_GREATER_OP_CODES",
        "CUMSUM",
        "CALL_ONCE",
        "BROADCAST_TO",
        "RFFT2D",
        "CONV_3D",
        "IMAG",
        "REAL",
        "COMPLEX_ABS",
        "HASHTABLE",
        "HASHTABLE_FIND",
        "HASHTABLE_IMPORT",
        "HASHTABLE_SIZE",
        "REDUCE_ALL",
        "CONV_3D_TRANSPOSE",
        "VAR_HANDLE",
        "READ_VARIABLE",
        "ASSIGN_VARIABLE",
        "BROADCAST_ARGS",
        "RANDOM_STANDARD_NORMAL",
        "BUCKETIZE",
        "RANDOM_UNIFORM",
        "MULTINOMIAL",
        "GELU",
        "DYNAMIC_UPDATE_SLICE",
        "RELU_0_TO_1",
        "UNSORTED_SEGMENT_PROD",
        "UNSORTED_SEGMENT_MAX",
        "UNSORTED_SEGMENT_SUM",
        "ATAN2",
        "UNSORTED_SEGMENT_MIN",
        "SIGN",
        "BITCAST",
        "BITWISE_XOR",
        "RIGHT_SHIFT",
        "STABLEHLO_LOGISTIC",
        "STABLEHLO_ADD",
        "STABLEHLO_DIVIDE",
        "STABLEHLO_MULTIPLY",
        "STABLEHLO_MAXIMUM",
        "STABLEHLO_RESHAPE",
        "STABLEHLO_CLAMP",
        "STABLEHLO_CONCATENATE",
        "STABLEHLO_BROADCAST_IN_DIM",
        "STABLEHLO_CONVOLUTION",
        "STABLEHLO_SLICE",
        "STABLEHLO_CUSTOM_CALL",
        "STABLEHLO_REDUCE",
        "STABLEHLO_ABS",
        "STABLEHLO_AND",
        "STABLEHLO_COSINE",
        "STABLEHLO_EXPONENTIAL",
        "STABLEHLO_FLOOR",
        "STABLEHLO_LOG",
        "STABLEHLO_MINIMUM",
        "STABLEHLO_NEGATE",
        "STABLEHLO_OR",
        "STABLEHLO_POWER",
        "STABLEHLO_REMAINDER",
        "STABLEHLO_RSQRT",
        "STABLEHLO_SELECT",
        "STABLEHLO_SUBTRACT",
        "STABLEHLO_TANH",
        "STABLEHLO_SCATTER",
        "STABLEHLO_COMPARE",
        "STABLEHLO_CONVERT",
        "STABLEHLO_DYNAMIC_SLICE",
        "STABLEHLO_DYNAMIC_UPDATE_SLICE",
        "STABLEHLO_PAD",
        "STABLEHLO_IOTA",
        "STABLEHLO_DOT_GENERAL",
        "STABLEHLO_REDUCE_WINDOW",
        "STABLEHLO_SORT",
        "STABLEHLO_WHILE",
        "STABLEHLO_GATHER",
        "STABLEHLO_TRANSPOSE",
        "DILATE",
        "STABLEHLO_RNG_BIT_GENERATOR",
        "REDUCE_WINDOW",
        "STABLEHLO_COMPOSITE",
        "STABLEHLO_SHIFT_LEFT",
        "STABLEHLO_CBRT",
        "STABLEHLO_CASE",
    ]
)

# TensorType enum -> (numpy dtype name, bytes per element; 0 when not fixed-size).
TENSOR_TYPES: dict[int, tuple[str, float]] = {
    0: ("float32", 4),
    1: ("float16", 2),
    2: ("int32", 4),
    3: ("uint8", 1),
    4: ("int64", 8),
    5: ("string", 0),
    6: ("bool", 1),
    7: ("int16", 2),
    8: ("complex64", 8),
    9: ("int8", 1),
    10: ("float64", 8),
    11: ("complex128", 16),
    12: ("uint64", 8),
    13: ("resource", 0),
    14: ("variant", 0),
    15: ("uint32", 4),
    16: ("uint16", 2),
    17: ("int4", 0),
    18: ("bfloat16", 2),
    19: ("int2", 0),
}

# The custom op an Edge TPU-compiled model runs its accelerated subgraph in.
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
# Builtin code of CUSTOM: operators with this code are identified by their custom_code.
CUSTOM = BUILTIN_OPERATORS.index("CUSTOM")


@dataclass(frozen=True)
class Quantization:
    """Affine quantization of one tensor (per tensor when scale has one entry)."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    quantized_dimension: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    buffer: int
    quantization: Quantization | None
    is_variable: bool = False
    sparse: bool = False
    has_data: bool = False  # a constant: its buffer holds data

    @property
    def dynamic(self) -> bool:
        """True when a non-batch dimension is only known at run time (-1 in the shape signature).

        A free batch dimension (Keras exports [-1, H, W, C]) is fixed to the stored shape when the
        interpreter allocates, so delegates see a static shape.
        """
        return any(d < 0 for d in self.shape_signature[1:]) or any(d < 0 for d in self.shape)


@dataclass(frozen=True)
class OperatorCode:
    builtin_code: int
    custom_code: str | None
    version: int

    @property
    def name(self) -> str:
        """CONV_2D, ..., or the custom op's own name."""
        if self.builtin_code == CUSTOM and self.custom_code:
            return self.custom_code
        if 0 <= self.builtin_code < len(BUILTIN_OPERATORS):
            return BUILTIN_OPERATORS[self.builtin_code]
        return f"BUILTIN_{self.builtin_code}"

    @property
    def is_custom(self) -> bool:
        return self.builtin_code == CUSTOM


@dataclass(frozen=True)
class OperatorInfo:
    index: int
    opcode_index: int
    code: OperatorCode
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options_type: int = 0
    options: Table | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.code.name


@dataclass(frozen=True)
class SubgraphInfo:
    index: int
    name: str
    tensors: tuple[TensorInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[OperatorInfo, ...]


@dataclass(frozen=True)
class BufferInfo:
    start: int  # absolute position of the data in the file (0 when empty)
    size: int


@dataclass
class TFLiteModel:
    """A parsed, verified .tflite flatbuffer."""

    version: int
    description: str
    operator_codes: tuple[OperatorCode, ...]
    subgraphs: tuple[SubgraphInfo, ...]
    buffers: tuple[BufferInfo, ...]
    metadata: dict[str, int]  # metadata name -> buffer index
    signature_keys: tuple[str, ...]
    size_bytes: int
    raw: Buffer = field(repr=False)

    @property
    def main(self) -> SubgraphInfo:
        """Subgraph 0, the one the interpreter runs."""
        return self.subgraphs[0]

    def buffer_bytes(self, index: int) -> bytes:
        info = self.buffers[index]
        return bytes(self.raw.data[info.start : info.start + info.size])

    def metadata_bytes(self, name: str) -> bytes | None:
        index = self.metadata.get(name)
        return None if index is None else self.buffer_bytes(index)


def read_bytes(source: ModelSource) -> bytes:
    """The model's bytes from a path or from bytes; BadInputError when unreadable."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: file not found", "check the model path") from exc
    except IsADirectoryError as exc:
        raise BadInputError(f"{path}: is a directory, not a .tflite file", "pass the .tflite file itself") from exc
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read: {exc.strerror}") from exc


def parse_model(source: ModelSource, name: str | None = None) -> TFLiteModel:
    """Parse and verify a .tflite model; BadInputError says what is wrong with a bad file."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "model")
    data = read_bytes(source)
    if not data:
        raise BadInputError(f"{label}: empty file (0 bytes)", "re-export or re-copy the model")
    try:
        return _parse(Buffer(data), label)
    except FlatbufferError as exc:
        raise BadInputError(
            f"{label}: not a valid TFLite model: {exc}",
            "the file is truncated, corrupted or not a .tflite; re-copy or re-convert it",
        ) from exc


def _parse(buf: Buffer, label: str) -> TFLiteModel:
    if buf.size >= 8 and buf.identifier() != FILE_IDENTIFIER:
        raise FlatbufferError(f"file identifier is {buf.identifier()!r}, expected {FILE_IDENTIFIER!r}")
    root = buf.root()
    codes = tuple(_operator_code(t) for t in root.tables(1, "operator_code"))
    buffers = tuple(_buffer(buf, t) for t in root.tables(4, "buffer"))
    subgraphs = tuple(_subgraph(i, t, codes, buffers) for i, t in enumerate(root.tables(2, "subgraph")))
    if not subgraphs:
        raise FlatbufferError("model has no subgraphs")
    metadata = {}
    for entry in root.tables(6, "metadata"):
        metadata[entry.string(0, "name") or ""] = entry.scalar(1, "uint32")
    for subgraph in subgraphs:
        _check_references(subgraph, len(buffers))
        _check_constants(subgraph, buffers)
    for name_, index in metadata.items():
        if index >= len(buffers):
            raise FlatbufferError(f"metadata {name_!r} points at buffer {index} of {len(buffers)}")
    signatures = tuple(t.string(2, "signature_key") or "" for t in root.tables(7, "signature_def"))
    return TFLiteModel(
        version=root.scalar(0, "uint32"),
        description=root.string(3, "description") or "",
        operator_codes=codes,
        subgraphs=subgraphs,
        buffers=buffers,
        metadata=metadata,
        signature_keys=signatures,
        size_bytes=buf.size,
        raw=buf,
    )


def _operator_code(table: Table) -> OperatorCode:
    # Codes above 127 live only in builtin_code; older files only set the deprecated int8 field.
    deprecated = table.scalar(0, "int8")
    builtin = table.scalar(3, "int32")
    return OperatorCode(
        builtin_code=max(deprecated, builtin),
        custom_code=table.string(1, "custom_code"),
        version=table.scalar(2, "int32", 1),
    )


def _buffer(buf: Buffer, table: Table) -> BufferInfo:
    offset = table.scalar(1, "uint64")
    if offset > 1:  # large models keep data outside the flatbuffer, addressed from file start
        size = table.scalar(2, "uint64")
        buf.check(offset, size, "external buffer data")
        return BufferInfo(offset, size)
    data = table._vector(0, 1, "data")
    if data is None:
        return BufferInfo(0, 0)
    return BufferInfo(*data)


def _subgraph(
    index: int, table: Table, codes: tuple[OperatorCode, ...], buffers: tuple[BufferInfo, ...]
) -> SubgraphInfo:
    tensors = tuple(_tensor(i, t, buffers) for i, t in enumerate(table.tables(0, "tensor")))
    operators = tuple(_operator(i, t, codes) for i, t in enumerate(table.tables(3, "operator")))
    return SubgraphInfo(
        index=index,
        name=table.string(4, "name") or "",
        tensors=tensors,
        inputs=tuple(table.scalars(1, "int32", "inputs")),
        outputs=tuple(table.scalars(2, "int32", "outputs")),
        operators=operators,
    )


def _tensor(index: int, table: Table, buffers: tuple[BufferInfo, ...]) -> TensorInfo:
    type_code = table.scalar(1, "int8")
    if type_code not in TENSOR_TYPES:
        raise FlatbufferError(f"tensor {index}: unknown tensor type {type_code}")
    shape = tuple(table.scalars(0, "int32", "shape"))
    signature = tuple(table.scalars(7, "int32", "shape_signature")) or shape
    buffer = table.scalar(2, "uint32")
    return TensorInfo(
        index=index,
        name=table.string(3, "name") or "",
        shape=shape,
        shape_signature=signature,
        dtype=TENSOR_TYPES[type_code][0],
        buffer=buffer,
        quantization=_quantization(table.table(4, "quantization")),
        is_variable=table.scalar(5, "bool", False),
        sparse=table.has(6),
        has_data=buffer < len(buffers) and buffers[buffer].size > 0,
    )


def _quantization(table: Table | None) -> Quantization | None:
    if table is None:
        return None
    scale = tuple(table.scalars(2, "float32", "scale"))
    if not scale:
        return None
    zero_point = tuple(table.scalars(3, "int64", "zero_point")) or (0,) * len(scale)
    return Quantization(scale, zero_point, table.scalar(6, "int32"))


def _operator(index: int, table: Table, codes: tuple[OperatorCode, ...]) -> OperatorInfo:
    opcode_index = table.scalar(0, "uint32")
    if opcode_index >= len(codes):
        raise FlatbufferError(f"operator {index}: opcode index {opcode_index} of {len(codes)}")
    table.raw_bytes(5, "custom_options")  # bounds-checked even though we do not decode them
    return OperatorInfo(
        index=index,
        opcode_index=opcode_index,
        code=codes[opcode_index],
        inputs=tuple(table.scalars(1, "int32", "inputs")),
        outputs=tuple(table.scalars(2, "int32", "outputs")),
        options_type=table.scalar(3, "uint8"),
        options=table.table(4, "builtin_options"),
    )


def _check_references(subgraph: SubgraphInfo, n_buffers: int) -> None:
    """Every index a runtime follows must point at something that exists."""
    n = len(subgraph.tensors)
    where = f"subgraph {subgraph.index}"
    for index in (*subgraph.inputs, *subgraph.outputs):
        if not 0 <= index < n:
            raise FlatbufferError(f"{where}: input/output tensor {index} of {n}")
    for op in subgraph.operators:
        for index in (*op.inputs, *op.outputs):
            if index != -1 and not 0 <= index < n:  # -1 marks an omitted optional input
                raise FlatbufferError(f"{where} operator {op.index} ({op.name}): tensor {index} of {n}")
    for tensor in subgraph.tensors:
        if tensor.buffer >= n_buffers:
            raise FlatbufferError(f"{where} tensor {tensor.index}: buffer {tensor.buffer} of {n_buffers}")


def _check_constants(subgraph: SubgraphInfo, buffers: tuple[BufferInfo, ...]) -> None:
    """A constant's buffer must hold all its elements; truncated weights are read past the end."""
    for tensor in subgraph.tensors:
        item = _item_size(tensor.dtype)
        if not tensor.has_data or tensor.sparse or not item or any(d < 0 for d in tensor.shape):
            continue
        size = buffers[tensor.buffer].size
        expected = math.prod(tensor.shape) * item
        if size < expected:
            raise FlatbufferError(
                f"tensor {tensor.index} ({tensor.name}): buffer holds {size} bytes, shape needs {expected}"
            )


def _item_size(dtype: str) -> int:
    for name, size in TENSOR_TYPES.values():
        if name == dtype:
            return int(size)
    return 0


def model_summary(model: TFLiteModel) -> dict[str, Any]:
    """Counts for quick display: operators, tensors, subgraphs, size."""
    return {
        "subgraphs": len(model.subgraphs),
        "operators": len(model.main.operators),
        "tensors": len(model.main.tensors),
        "size_bytes": model.size_bytes,
    }
