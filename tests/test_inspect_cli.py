"""`edgetk inspect` and the compatibility predictions behind it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from delegates.compat import count_partitions, predict
from delegates.inspection import inspect_model
from delegates.model_runner import open_model
from delegates.tflite_model import parse_model
from toolkit.cli import main

HEAVY = ("tensorflow", "onnx", "onnxruntime", "torch")


def _inspect_json(path, *extra):
    result = CliRunner().invoke(main, ["inspect", str(path), "--json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_float_cnn_lists_operators_and_predictions(tflite_cnn_fp32):
    report = _inspect_json(tflite_cnn_fp32)
    ops = {row["op"]: row for row in report["operators"]}
    assert ops["CONV_2D"]["count"] == 3
    assert {"DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"} <= set(ops)
    assert report["variant"] == "fp32"
    assert report["inputs"][0]["shape"] == [1, 32, 32, 3]
    assert set(report["predictions"]) == {"gpu", "nnapi", "edgetpu"}
    gpu = report["predictions"]["gpu"]
    assert (gpu["supported_nodes"], gpu["total_nodes"], gpu["partitions"]) == (9, 9, 1)
    edgetpu = report["predictions"]["edgetpu"]
    assert edgetpu["supported_nodes"] == 0
    assert "int8" in edgetpu["blocking"]


def test_int8_cnn_edge_tpu_mapping_stops_only_at_float_edges(tflite_cnn_int8):
    report = _inspect_json(tflite_cnn_int8)
    assert report["variant"] == "int8"
    assert report["inputs"][0]["dtype"] == "float32"
    edgetpu = report["predictions"]["edgetpu"]
    assert dict(edgetpu["fallback_ops"]) == {"QUANTIZE": 1, "DEQUANTIZE": 1}
    assert "not compiled" in edgetpu["blocking"]
    assert report["tensors"]["per_channel"] > 0  # conv weights are per-channel quantized


def test_int8_io_model_shows_quantization_of_inputs(tflite_cnn_int8_io):
    report = _inspect_json(tflite_cnn_int8_io)
    assert report["variant"] == "int8-full"
    quant = report["inputs"][0]["quantization"]
    assert quant["per_channel"] is False
    assert quant["scale"] > 0


def test_custom_op_is_a_predicted_fallback(tflite_custom_op):
    report = _inspect_json(tflite_custom_op, "--delegate", "gpu,nnapi", "--delegate", "vx")
    assert report["custom_ops"] == ["EdgetkTestOp"]
    for name in ("gpu", "nnapi", "vx"):
        prediction = report["predictions"][name]
        assert [c["op"] for c in prediction["cpu_ops"]] == ["EdgetkTestOp"]
        assert prediction["supported_nodes"] == prediction["total_nodes"] - 1


def test_edgetpu_compiled_model_is_detected(tflite_edgetpu_compiled):
    report = _inspect_json(tflite_edgetpu_compiled)
    assert report["edgetpu_compiled"] is True
    edgetpu = report["predictions"]["edgetpu"]
    assert edgetpu["blocking"] is None
    assert edgetpu["supported_nodes"] == 1
    gpu = report["predictions"]["gpu"]
    assert [c["op"] for c in gpu["cpu_ops"]] == ["edgetpu-custom-op"]


def test_nnapi_prediction_depends_on_the_android_api_level(tflite_mobilenet_v2_int8):
    report_27 = _inspect_json(tflite_mobilenet_v2_int8, "--delegate", "nnapi", "--android-api", "27")
    report_30 = _inspect_json(tflite_mobilenet_v2_int8, "--delegate", "nnapi", "--android-api", "30")
    old, new = report_27["predictions"]["nnapi"], report_30["predictions"]["nnapi"]
    assert new["supported_nodes"] > old["supported_nodes"]
    assert any("needs Android API" in c["reason"] for c in old["cpu_ops"])


def test_mobilenet_v2_lists_operators_and_fallbacks(tflite_mobilenet_v2, tflite_mobilenet_v2_int8):
    fp32 = _inspect_json(tflite_mobilenet_v2)
    ops = {row["op"] for row in fp32["operators"]}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED"} <= ops
    assert fp32["node_count"] > 60
    assert fp32["predictions"]["gpu"]["supported_nodes"] == fp32["node_count"]
    assert fp32["predictions"]["edgetpu"]["supported_nodes"] == 0
    int8 = _inspect_json(tflite_mobilenet_v2_int8)
    mapped = int8["predictions"]["edgetpu"]
    assert mapped["supported_nodes"] == int8["node_count"] - 2  # all but the float I/O QUANTIZE/DEQUANTIZE
    text = CliRunner().invoke(main, ["inspect", str(tflite_mobilenet_v2_int8)])
    assert text.exit_code == 0
    assert "Predicted delegation" in text.output
    assert "DEPTHWISE_CONV_2D" in text.output


def test_partition_count_matches_tflite_for_xnnpack(tflite_cnn_int8, tflite_mobilenet_v2_int8):
    """Our partitioner, fed the ops XNNPACK really took, predicts the partitions TFLite really made."""
    pytest.importorskip("ai_edge_litert")
    for path in (tflite_cnn_int8, tflite_mobilenet_v2_int8):
        runner = open_model(path, "xnnpack", runtime="ai_edge_litert")
        actual = runner.delegation()
        model = parse_model(path)
        left = list(actual["cpu_ops"])
        supported = []
        for op in model.main.operators:
            on_cpu = op.name in left
            if on_cpu:
                left.remove(op.name)
            supported.append(not on_cpu)
        assert count_partitions(model.main, supported) == actual["partitions"]


def test_gpu_rules_use_operator_options(tflite_models):
    model = parse_model(tflite_models["cnn_fp32"])
    prediction = predict(model, "gpu")
    assert prediction.fully_delegated  # softmax beta 1, depth multiplier 1, const axes for MEAN
    with pytest.raises(ValueError, match="no compatibility table"):
        predict(model, "xnnpack")


def test_unknown_prediction_target_is_a_config_error(tflite_cnn_fp32):
    result = CliRunner().invoke(main, ["inspect", str(tflite_cnn_fp32), "--delegate", "gpuu"])
    assert result.exit_code == 4
    assert "no compatibility prediction for gpuu" in result.output


def test_corrupt_model_exits_with_bad_input(tflite_corrupt):
    result = CliRunner().invoke(main, ["inspect", str(tflite_corrupt)])
    assert result.exit_code == 3
    assert result.output.startswith("error: ")


def test_inspect_imports_no_tensorflow(tflite_cnn_int8, repo_root):
    code = (
        "import sys, json; from delegates.inspection import inspect_model; "
        f"inspect_model({str(tflite_cnn_int8)!r}); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root, check=True)
    assert json.loads(proc.stdout) == []


def test_inspect_model_api_returns_plain_data(tflite_cnn_fp32_nchw):
    report = inspect_model(tflite_cnn_fp32_nchw, ["gpu"])
    assert report["metadata"]["inputs"][0]["source_layout"] == "NCHW"
    json.dumps(report)  # JSON-ready
