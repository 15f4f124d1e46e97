"""Our own .tflite reader: cross-checked against ai_edge_litert's generated schema, and robust to bad files."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from delegates.metadata import read_metadata
from delegates.tflite_model import BUILTIN_OPERATORS, TENSOR_TYPES, parse_model
from toolkit.errors import BadInputError

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")

GOOD = ("cnn_fp32", "cnn_int8", "cnn_int8_io", "cnn_fp32_nchw", "cnn_int8_io_nchw", "custom_op", "edgetpu_compiled")


def test_builtin_operator_names_match_the_schema_enum():
    enum = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for code, name in enum.items():
        assert BUILTIN_OPERATORS[code] == name
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    for code, (name, _) in TENSOR_TYPES.items():
        assert types[code] == name


def _reference(path):
    """The same facts read with the flatbuffers-generated schema module."""
    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        codes.append(
            (max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), custom.decode() if custom else None, code.Version())
        )
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        q = t.Quantization()
        scale = tuple(q.ScaleAsNumpy().tolist()) if q is not None and q.ScaleLength() else ()
        zero = tuple(q.ZeroPointAsNumpy().tolist()) if q is not None and q.ZeroPointLength() else ()
        shape = tuple(t.ShapeAsNumpy().tolist()) if t.ShapeLength() else ()
        tensors.append((t.Name().decode(), shape, t.Type(), t.Buffer(), scale, zero))
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        ins = tuple(op.InputsAsNumpy().tolist()) if op.InputsLength() else ()
        outs = tuple(op.OutputsAsNumpy().tolist()) if op.OutputsLength() else ()
        ops.append((op.OpcodeIndex(), ins, outs, op.BuiltinOptionsType()))
    buffers = [model.Buffers(i).DataLength() for i in range(model.BuffersLength())]
    metadata = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    io = (tuple(graph.InputsAsNumpy().tolist()), tuple(graph.OutputsAsNumpy().tolist()))
    return codes, tensors, ops, buffers, metadata, io


@pytest.mark.parametrize("name", GOOD)
def test_reader_agrees_with_the_generated_schema(tflite_models, name):
    path = tflite_models[name]
    codes, tensors, ops, buffers, metadata, io = _reference(path)
    model = parse_model(path)
    assert [(c.builtin_code, c.custom_code, c.version) for c in model.operator_codes] == codes
    type_codes = {v[0]: k for k, v in TENSOR_TYPES.items()}
    ours = [
        (
            t.name,
            t.shape,
            type_codes[t.dtype],
            t.buffer,
            t.quantization.scale if t.quantization else (),
            t.quantization.zero_point if t.quantization else (),
        )
        for t in model.main.tensors
    ]
    for mine, theirs in zip(ours, tensors, strict=True):
        assert mine[:4] == theirs[:4]
        np.testing.assert_allclose(mine[4], theirs[4], rtol=1e-7)  # float32 scales read as Python floats
        assert tuple(mine[5]) == tuple(theirs[5])
    assert [(o.opcode_index, o.inputs, o.outputs, o.options_type) for o in model.main.operators] == ops
    assert [b.size for b in model.buffers] == buffers
    assert model.metadata == metadata
    assert (model.main.inputs, model.main.outputs) == io


def test_reader_agrees_on_mobilenet(tflite_mobilenet_models):
    for path in tflite_mobilenet_models.values():
        _codes, tensors, ops, buffers, _, _ = _reference(path)
        model = parse_model(path)
        assert len(model.main.tensors) == len(tensors)
        assert [o.opcode_index for o in model.main.operators] == [o[0] for o in ops]
        assert [b.size for b in model.buffers] == buffers
        assert {op.name for op in model.main.operators} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN"}


def test_metadata_is_read_without_tensorflow(tflite_models):
    meta = read_metadata(tflite_models["cnn_fp32_nchw"])
    assert meta["schema"] == "edgetk.metadata/1"
    assert meta["inputs"][0]["perm"] == [0, 2, 3, 1]
    assert read_metadata(tflite_models["cnn_fp32"]) is None
    assert read_metadata(tflite_models["cnn_fp32_nchw"].read_bytes())["variant"] == "fp32"


@pytest.mark.parametrize("name", ["truncated", "corrupt"])
def test_bad_files_raise_bad_input(tflite_models, name):
    with pytest.raises(BadInputError) as info:
        parse_model(tflite_models[name])
    assert "not a valid TFLite model" in info.value.message
    assert info.value.hint


def test_empty_missing_and_foreign_files(tmp_path):
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        parse_model(empty)
    with pytest.raises(BadInputError, match="not found"):
        parse_model(tmp_path / "missing.tflite")
    foreign = tmp_path / "model.onnx"
    foreign.write_bytes(b"\x08\x07\x12\x07pytorch" + bytes(200))
    with pytest.raises(BadInputError, match="identifier"):
        parse_model(foreign)


def test_every_truncation_and_random_corruption_is_caught_cleanly(tflite_models):
    """No IndexError/struct.error/UnicodeError escapes: only BadInputError, or a model that parses."""
    data = tflite_models["cnn_int8"].read_bytes()
    for cut in range(0, len(data), 37):
        try:
            parse_model(data[:cut])
        except BadInputError:
            pass
    rng = random.Random(7)
    for _ in range(300):
        corrupted = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            corrupted[rng.randrange(len(corrupted))] = rng.randrange(256)
        try:
            parse_model(bytes(corrupted))
        except BadInputError:
            pass


CRASH_PROBE = """
import sys, json
path, mode = sys.argv[1], sys.argv[2]
if mode == "raw":
    from tflite_runtime.interpreter import Interpreter
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    print(json.dumps({"loaded": True}))
else:
    from delegates import open_model
    from toolkit.errors import BadInputError
    try:
        open_model(path, runtime="tflite_runtime")
    except BadInputError as exc:
        print(json.dumps({"error": exc.message}))
"""


@pytest.mark.parametrize("name", ["truncated", "corrupt"])
def test_verification_keeps_bad_files_away_from_tflite_runtime(tflite_models, repo_root, name):
    """tflite-runtime 2.14 alone never loads them (on the corrupt file it reads wild memory and dies by
    SIGSEGV in most runs, undefined behaviour); through open_model both are clean BadInputErrors."""
    pytest.importorskip("tflite_runtime")
    path = str(tflite_models[name])
    raw = subprocess.run(
        [sys.executable, "-c", CRASH_PROBE, path, "raw"], capture_output=True, text=True, cwd=repo_root, timeout=120
    )
    assert raw.returncode != 0
    assert "loaded" not in raw.stdout
    ours = subprocess.run(
        [sys.executable, "-c", CRASH_PROBE, path, "ours"], capture_output=True, text=True, cwd=repo_root, timeout=120
    )
    assert ours.returncode == 0, ours.stderr
    assert "not a valid TFLite model" in json.loads(ours.stdout)["error"]
