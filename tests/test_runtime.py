"""The runtime shim and ModelRunner, against the real runtimes (ai-edge-litert, tflite-runtime, tf.lite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from delegates import open_model
from delegates.runtime import ORDER, get_runtime
from toolkit.errors import BadInputError, ConfigError, MissingDependencyError


def _installed(name: str) -> bool:
    try:
        get_runtime(name)
        return True
    except MissingDependencyError:
        return False


LIGHT_RUNTIMES = [
    pytest.param(n, marks=pytest.mark.skipif(not _installed(n), reason=f"{n} not installed")) for n in ORDER[:2]
]


@pytest.mark.parametrize("runtime", LIGHT_RUNTIMES)
def test_source_layout_in_float_out(tflite_cnn_fp32_nchw, runtime):
    """invoke() takes NCHW (the source layout) and equals invoke_raw on the NHWC transpose."""
    runner = open_model(tflite_cnn_fp32_nchw, runtime=runtime)
    assert runner.runtime.name == runtime
    assert runner.inputs[0].source_shape == (1, 3, 32, 32)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    out = runner.invoke({"input": x})
    assert list(out) == ["probs"]
    raw = runner.invoke_raw([x.transpose(0, 2, 3, 1)])[0]
    np.testing.assert_array_equal(out["probs"], raw)
    assert out["probs"].dtype == np.float32
    np.testing.assert_allclose(out["probs"].sum(), 1.0, rtol=1e-5)
    # the same values by position and by TFLite tensor name
    np.testing.assert_array_equal(runner.invoke([x])["probs"], out["probs"])
    np.testing.assert_array_equal(runner.invoke({runner.inputs[0].name: x})["probs"], out["probs"])


@pytest.mark.parametrize("runtime", LIGHT_RUNTIMES)
def test_int8_io_is_quantized_and_dequantized_transparently(tflite_cnn_int8_io_nchw, tflite_cnn_fp32_nchw, runtime):
    quantized = open_model(tflite_cnn_int8_io_nchw, runtime=runtime)
    reference = open_model(tflite_cnn_fp32_nchw, runtime=runtime)
    spec = quantized.inputs[0]
    assert spec.quantized
    assert spec.dtype == np.int8
    x = quantized.random_inputs(seed=3)["input"]
    # random inputs are exactly representable: (x / scale + zero_point) is an int8 integer
    q = x / spec.scale + spec.zero_point
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    assert q.min() >= -128
    assert q.max() <= 127
    got = quantized.invoke({"input": x})["probs"]
    want = reference.invoke({"input": x})["probs"]
    assert got.dtype == np.float32
    assert np.abs(got - want).max() < 0.02  # a few output quantization steps (scale 1/256)
    assert int(np.argmax(got)) == int(np.argmax(want)) or np.sort(want[0])[-1] - np.sort(want[0])[-2] < 0.02


def test_all_runtimes_give_the_same_outputs(tflite_cnn_fp32, repo_root):
    """ai-edge-litert and tflite-runtime in this process, tf.lite through EDGETK_RUNTIME in a child."""
    available = [n for n in ORDER[:2] if _installed(n)]
    if len(available) < 2:
        pytest.skip("needs ai-edge-litert and tflite-runtime")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    outputs = [next(iter(open_model(tflite_cnn_fp32, runtime=n).invoke([x]).values())) for n in available]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=3e-5)
    code = textwrap.dedent(
        f"""
        import json, sys, numpy as np
        from delegates import open_model
        runner = open_model({str(tflite_cnn_fp32)!r})
        x = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
        out = next(iter(runner.invoke([x]).values()))
        print(json.dumps({{"runtime": runner.runtime.name, "out": out.tolist()}}))
        """
    )
    env = {**os.environ, "EDGETK_RUNTIME": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=repo_root, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["runtime"] == "tensorflow"
    np.testing.assert_allclose(np.array(result["out"], dtype=np.float32), outputs[0], atol=3e-5)


@pytest.mark.parametrize(
    ("runtime", "model", "expected"),
    [
        ("ai_edge_litert", "cnn_fp32", (9, 9, 1, [])),
        ("ai_edge_litert", "cnn_int8", (10, 11, 2, ["SOFTMAX"])),
        ("tflite_runtime", "cnn_fp32", (9, 9, 1, [])),
        ("tflite_runtime", "cnn_int8", (0, 11, 0, None)),  # 2.14 never applies XNNPACK to int8
    ],
)
def test_delegation_comes_from_the_execution_plan(tflite_models, runtime, model, expected):
    if not _installed(runtime):
        pytest.skip(f"{runtime} not installed")
    runner = open_model(tflite_models[model], "xnnpack", threads=2, runtime=runtime)
    got = runner.delegation()
    done, total, parts, cpu = expected
    assert (got["delegated_nodes"], got["total_nodes"], got["partitions"]) == (done, total, parts)
    if cpu is not None:
        assert got["cpu_ops"] == cpu
    reference = open_model(tflite_models[model], None, runtime=runtime).delegation()
    assert (reference["delegated_nodes"], reference["partitions"]) == (0, 0)  # the plain CPU reference


def test_runtime_order_names_and_env_override(monkeypatch):
    assert get_runtime().name == next(n for n in ORDER if _installed(n))
    assert get_runtime("tflite").name == "tflite_runtime"
    assert get_runtime("litert").name == "ai_edge_litert"
    monkeypatch.setenv("EDGETK_RUNTIME", "tflite-runtime")
    assert get_runtime().name == "tflite_runtime"
    with pytest.raises(ConfigError, match="unknown TFLite runtime"):
        get_runtime("onnxruntime")


BLOCKER = """
import sys, json
BLOCKED = set(sys.argv[1].split(","))
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, Blocker())
"""


def _blocked_child(blocked: str, body: str, repo_root, env=None) -> subprocess.CompletedProcess:
    code = BLOCKER + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code, blocked], capture_output=True, text=True, cwd=repo_root, env=env, timeout=300
    )


def test_no_runtime_gives_one_error_naming_the_pip_command(repo_root, tflite_cnn_fp32):
    proc = _blocked_child(
        "ai_edge_litert,tflite_runtime,tensorflow",
        f"""
        from delegates import open_model
        from toolkit.errors import MissingDependencyError
        try:
            open_model({str(tflite_cnn_fp32)!r})
        except MissingDependencyError as exc:
            print(json.dumps({{"message": exc.message, "hint": exc.hint, "code": int(exc.exit_code)}}))
        """,
        repo_root,
    )
    assert proc.returncode == 0, proc.stderr
    error = json.loads(proc.stdout)
    assert "no TFLite runtime is installed" in error["message"]
    assert "pip install ai-edge-litert" in error["hint"]
    assert error["code"] == 5


def test_delegates_imports_without_workstation_packages(repo_root, tflite_cnn_int8_io_nchw):
    """The device boundary: delegates runs with tensorflow, onnx, click, pydantic, yaml and rich unimportable."""
    proc = _blocked_child(
        "tensorflow,onnx,onnxruntime,onnx2tf,torch,click,pydantic,yaml,rich,keras,tf_keras",
        f"""
        import delegates
        from delegates import open_model, select_delegate, read_metadata
        from delegates.inspection import inspect_model
        path = {str(tflite_cnn_int8_io_nchw)!r}
        runner = open_model(path, "xnnpack", threads=1)
        out = runner.invoke(runner.random_inputs(0))
        report = select_delegate(path, ["gpu", "xnnpack"], threads=1)
        inspect_model(path)
        print(json.dumps({{"meta": read_metadata(path)["variant"], "chosen": report.chosen,
                           "outputs": list(out), "modules": sorted(m for m in sys.modules
                           if m.split(".")[0] in ("click", "pydantic", "yaml", "rich", "tensorflow"))}}))
        """,
        repo_root,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"meta": "int8-full", "chosen": "xnnpack", "outputs": ["probs"], "modules": []}


def test_bad_inputs_are_reported_with_the_expected_shape(tflite_cnn_fp32_nchw):
    runner = open_model(tflite_cnn_fp32_nchw)
    with pytest.raises(BadInputError, match=r"takes \[1, 3, 32, 32\]"):
        runner.invoke({"input": np.zeros((1, 32, 32, 3), np.float32)})
    with pytest.raises(BadInputError, match="no value for input"):
        runner.invoke({"image": np.zeros((1, 3, 32, 32), np.float32), "other": np.zeros(1)})
    with pytest.raises(BadInputError, match="2 input array"):
        runner.invoke([np.zeros((1, 3, 32, 32)), np.zeros(1)])


def test_model_problems_are_bad_input_errors(tflite_models):
    with pytest.raises(BadInputError, match="EdgetkTestOp"):
        open_model(tflite_models["custom_op"])
    for name in ("truncated", "corrupt"):
        for runtime in ("tflite_runtime", "ai_edge_litert"):
            if _installed(runtime):
                with pytest.raises(BadInputError, match="not a valid TFLite model"):
                    open_model(tflite_models[name], runtime=runtime)


def test_threads_must_be_positive(tflite_cnn_fp32):
    with pytest.raises(ConfigError, match="threads"):
        open_model(tflite_cnn_fp32, "xnnpack", threads=0)
