"""Conversion speed: `edgetk convert --quant int8` against the `onnx2tf` command, side by side.

Both make the same full-int8, float-I/O TFLite model of squeezenet (onnx's light model with seeded
random weights, tests/fixtures/onnx_models.py) from the same 20 NHWC-equivalent calibration images:

    onnx2tf -i squeezenet.onnx -oiqt -cind data_0 calib_nhwc.npy "[[[[0,0,0]]]]" "[[[[1,1,1]]]]" -n
    edgetk convert squeezenet.onnx -o OUT --quant int8 --calib calib.npy --eval eval.npz

onnx2tf has no way to ask for one quantized file: -oiqt writes fp32, fp16, dynamic-range, int8,
full-int8 and two int16-activation models, after saving a SavedModel. edgetk converts exactly the
variants asked for and then validates them against onnxruntime (included in its time). Each
onnx2tf run gets the sample-image file it would otherwise download, in its working folder, and
its own copy of the model (it rewrites its input file). The two commands alternate for --rounds
rounds; the ratio of the medians is reported. Target: edgetk / onnx2tf <= 1.0. Both int8 models
are also compared with onnxruntime on 4 held-out inputs (cosine of the logits).

    .venv/bin/python -m bench.bench_convert [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.0
CALIBRATION_SAMPLES = 20
SAMPLE_IMAGES = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "TF_CPP_MIN_LOG_LEVEL": "3"}


def prepare(root: Path) -> dict[str, Path]:
    """squeezenet.onnx, calibration data in both layouts, evaluation data, onnx2tf's sample file."""
    sys.path.insert(0, str(REPO))
    from tests.fixtures.onnx_models import light_input, materialize_light_model

    model = materialize_light_model("squeezenet", root / "squeezenet.onnx", seed=0)
    calib = light_input((1, 3, 224, 224), seed=11, count=CALIBRATION_SAMPLES)
    evaluation = light_input((1, 3, 224, 224), seed=12, count=4)
    paths = {
        "model": model,
        "calib": root / "calib.npy",
        "calib_nhwc": root / "calib_nhwc.npy",
        "eval": root / "eval.npz",
        "samples": root / SAMPLE_IMAGES,
    }
    np.save(paths["calib"], calib)
    np.save(paths["calib_nhwc"], calib.transpose(0, 2, 3, 1))
    np.savez(paths["eval"], data_0=evaluation)
    np.save(paths["samples"], light_input((1, 3, 128, 128), seed=13, count=20).transpose(0, 2, 3, 1))
    return paths


def run_onnx2tf(paths: dict[str, Path], workdir: Path) -> tuple[float, Path]:
    workdir.mkdir(parents=True)
    shutil.copy(paths["samples"], workdir / SAMPLE_IMAGES)  # else it downloads them
    model = workdir / "squeezenet.onnx"
    shutil.copy(paths["model"], model)  # onnx2tf rewrites the file it converts
    argv = [str(Path(sys.executable).parent / "onnx2tf"), "-i", str(model), "-o", str(workdir / "out"), "-oiqt"]
    argv += ["-cind", "data_0", str(paths["calib_nhwc"]), "[[[[0,0,0]]]]", "[[[[1,1,1]]]]", "-n"]
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=workdir, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    produced = workdir / "out" / "squeezenet_integer_quant.tflite"
    if proc.returncode != 0 or not produced.is_file():
        raise RuntimeError(f"onnx2tf failed ({proc.returncode}): {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    return seconds, produced


def run_edgetk(paths: dict[str, Path], workdir: Path) -> tuple[float, Path]:
    argv = [sys.executable, "-m", "toolkit.cli", "convert", str(paths["model"]), "-o", str(workdir / "out")]
    argv += ["--quant", "int8", "--calib", str(paths["calib"]), "--eval", str(paths["eval"]), "--quiet"]
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    produced = workdir / "out" / "squeezenet.int8.tflite"
    if proc.returncode != 0 or not produced.is_file():
        raise RuntimeError(f"edgetk convert failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds, produced


def int8_cosine(model: Path, paths: dict[str, Path], nhwc_input: bool) -> float:
    """Cosine of the int8 model's logits against onnxruntime's on the evaluation inputs."""
    import onnxruntime

    from delegates import open_model

    inputs = np.load(paths["eval"])["data_0"]
    session = onnxruntime.InferenceSession(str(paths["model"]), providers=["CPUExecutionProvider"])
    expected = np.concatenate([session.run(None, {"data_0": x[None]})[0].ravel() for x in inputs])
    runner = open_model(model)
    # onnx2tf's file carries no edgetk metadata, so its runner takes the NHWC layout directly.
    feeds = [x[None].transpose(0, 2, 3, 1) if nhwc_input else x[None] for x in inputs]
    got = np.concatenate([next(iter(runner.invoke([feed]).values())).ravel() for feed in feeds])
    return float(got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench_convert", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each command")
    args = parser.parse_args(argv)

    from toolkit.output import format_bytes, print_table

    root = Path(tempfile.mkdtemp(prefix="edgetk-bench-convert-"))
    try:
        paths = prepare(root)
        times: dict[str, list[float]] = {"onnx2tf": [], "edgetk": []}
        models: dict[str, Path] = {}
        for index in range(args.rounds):
            seconds, models["onnx2tf"] = run_onnx2tf(paths, root / f"onnx2tf-{index}")
            times["onnx2tf"].append(seconds)
            seconds, models["edgetk"] = run_edgetk(paths, root / f"edgetk-{index}")
            times["edgetk"].append(seconds)
        figures = _figures(times, models, paths)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows = [
        ["onnx2tf -oiqt (s, median)", figures["onnx2tf_s"], "", ""],
        ["edgetk convert --quant int8 (s, median)", figures["edgetk_s"], "", ""],
        ["edgetk / onnx2tf", figures["ratio"], f"<= {TARGET}", "PASS" if figures["pass"] else "FAIL"],
        [
            "int8 size onnx2tf / edgetk",
            f"{format_bytes(figures['onnx2tf_int8_bytes'])} / {format_bytes(figures['edgetk_int8_bytes'])}",
            "",
            "",
        ],
        [
            "int8 cosine vs onnxruntime onnx2tf / edgetk",
            f"{figures['onnx2tf_cosine']} / {figures['edgetk_cosine']}",
            "",
            "",
        ],
    ]
    print_table(f"squeezenet -> int8, {args.rounds} alternating rounds", ["measure", "value", "target", "result"], rows)
    return figures


def _figures(times: dict[str, list[float]], models: dict[str, Path], paths: dict[str, Path]) -> dict[str, Any]:
    onnx2tf_s = statistics.median(times["onnx2tf"])
    edgetk_s = statistics.median(times["edgetk"])
    ratio = edgetk_s / onnx2tf_s
    sizes = {name: model.stat().st_size for name, model in models.items()}
    return {
        "onnx2tf_s": round(onnx2tf_s, 2),
        "edgetk_s": round(edgetk_s, 2),
        "rounds": {name: [round(t, 2) for t in values] for name, values in times.items()},
        "ratio": round(ratio, 3),
        "target": TARGET,
        "pass": ratio <= TARGET,
        "onnx2tf_int8_bytes": sizes["onnx2tf"],
        "edgetk_int8_bytes": sizes["edgetk"],
        "onnx2tf_cosine": round(int8_cosine(models["onnx2tf"], paths, nhwc_input=True), 5),
        "edgetk_cosine": round(int8_cosine(models["edgetk"], paths, nhwc_input=False), 5),
    }


if __name__ == "__main__":
    main(sys.argv[1:])
