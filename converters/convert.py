"""`convert_model`: source model in, validated TFLite variants with reports and metadata out.

The heavy lifting (TensorFlow, onnx2tf) happens in a worker child process (`converters.worker`);
this module prepares the request, shows the worker's progress, embeds the edgetk metadata,
validates every variant through the delegates runner, writes the reports, and only then moves the
finished files into the output folder. All work happens in a temporary folder inside the output
folder, so a failure at any point leaves nothing half-written behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from converters import metadata as meta
from converters import validate
from converters.calibration import DataRef, ImageRecipe, describe_data
from converters.layout import layout_names
from converters.sources import SourceFormat, detect_format
from converters.variants import VARIANTS, parse_variants
from toolkit.errors import ConfigError, ConversionError, ToolkitError, error_from_dict

REPORT_SCHEMA = "edgetk.convert-report/1"
TEMP_PREFIX = ".edgetk-convert-"
DataArg = str | Path | DataRef | np.ndarray | dict | None
ProgressFn = Callable[[str], None]


@dataclass
class VariantResult:
    """One converted variant: where it is, how big, how close to the source."""

    variant: str
    tflite_path: Path
    report_path: Path
    size_bytes: int
    ratio_to_fp32: float | None
    metrics: dict[str, Any]  # worst value across outputs: max/mean abs error, cosine, snr_db, top1_agreement
    accuracy: dict[str, Any] | None  # {"variant", "source", "delta_points", "output"} when labels were given
    report: dict[str, Any]


@dataclass
class ConversionResult:
    """Everything `convert_model` produced."""

    source: Path
    format: str
    out_dir: Path
    variants: dict[str, VariantResult]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    calibration: dict[str, Any] | None
    evaluation: dict[str, Any]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "format": self.format,
            "out_dir": str(self.out_dir),
            "seconds": round(self.seconds, 3),
            "inputs": self.inputs,
            "outputs": self.outputs,
            "calibration": self.calibration,
            "evaluation": self.evaluation,
            "variants": {name: v.report for name, v in self.variants.items()},
        }


def convert_model(
    source: str | Path,
    out_dir: str | Path,
    variants: str | Sequence[str] = ("fp32",),
    calibration: DataArg = None,
    evaluation: DataArg = None,
    *,
    labels: str | Path | None = None,
    recipe: ImageRecipe | str | Path | None = None,
    synthetic_calibration: bool = False,
    calibration_samples: int | None = 256,
    eval_samples: int | None = 1000,
    holdout_fraction: float = 0.2,
    per_channel: bool = True,
    input_shapes: dict[str, Sequence[int]] | None = None,
    keep_layout: Sequence[str] = (),
    progress: ProgressFn | None = None,
    timeout: float | None = None,
    keep_workdir: bool = False,
) -> ConversionResult:
    """Convert a model to the requested TFLite variants, validate each, and write them to out_dir.

    calibration / evaluation: a .npy/.npz path, an image folder (with `recipe`), a numpy array or
    a dict of arrays keyed by input name (an optional `labels` key holds class labels). Without
    evaluation data, a held-out part of the calibration data (`holdout_fraction`) is used and never
    calibrated on. Files are named `<stem>.<variant>.tflite` and `<stem>.<variant>.report.json`.
    """
    started = time.perf_counter()
    source = Path(source)
    fmt = detect_format(source)
    names = parse_variants(variants)
    if isinstance(recipe, (str, Path)):
        from converters.calibration import load_recipe

        recipe = load_recipe(recipe)
    _require_calibration(names, calibration, synthetic_calibration)
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out_dir)).resolve()
    say = progress or (lambda message: None)
    try:
        staging = workdir / "out"
        staging.mkdir()
        # Labels travel with the evaluation data, or with the calibration data it is split from.
        eval_ref = _data_ref(evaluation, recipe, labels, workdir, "evaluation")
        calib_ref = _data_ref(calibration, recipe, None if eval_ref else labels, workdir, "calibration")
        request = {
            "source": str(source.resolve()),
            "format": fmt.name,
            "stem": _stem(source),
            "out_dir": str(staging),
            "variants": names,
            "calibration": calib_ref.__dict__ if calib_ref else None,
            "evaluation": eval_ref.__dict__ if eval_ref else None,
            "synthetic_calibration": bool(synthetic_calibration and calib_ref is None),
            "calibration_samples": calibration_samples,
            "eval_samples": eval_samples,
            "holdout_fraction": holdout_fraction,
            "per_channel": per_channel,
            "input_shapes": {k: list(v) for k, v in (input_shapes or {}).items()},
            "keep_layout": list(keep_layout),
        }
        worker_result = run_worker(request, workdir, say, timeout)
        results = _finish_variants(source, fmt, worker_result, workdir, recipe_for(calib_ref), say)
        _move_into_place(staging, out_dir)
        final = {name: _relocated(result, out_dir) for name, result in results.items()}
    except BaseException:
        _discard(workdir, out_dir if created else None, keep_workdir)
        raise
    _discard(workdir, None, keep_workdir)
    return ConversionResult(
        source=source,
        format=fmt.name,
        out_dir=out_dir,
        variants=final,
        inputs=worker_result["inputs"],
        outputs=worker_result["outputs"],
        calibration=worker_result["calibration"],
        evaluation=worker_result["evaluation"],
        seconds=time.perf_counter() - started,
        timings=worker_result.get("timings", {}),
    )


def _require_calibration(names: list[str], calibration: DataArg, synthetic: bool) -> None:
    needing = [n for n in names if VARIANTS[n].needs_calibration]
    if needing and calibration is None and not synthetic:
        raise ConfigError(
            f"{', '.join(needing)} need(s) calibration data",
            "pass --calib DATA (.npy/.npz or an image folder with a recipe), "
            "or --synthetic-calibration to calibrate on random data (inaccurate; the report says so)",
        )


def _stem(source: Path) -> str:
    return source.name if source.is_dir() else source.stem


def _data_ref(data: DataArg, recipe: ImageRecipe | None, labels: Any, workdir: Path, what: str) -> DataRef | None:
    """A DataRef for a path, or for in-memory arrays saved into the work folder."""
    if data is None:
        return None
    if isinstance(data, DataRef):
        return data
    if isinstance(data, (np.ndarray, dict)):
        path = workdir / f"{what}.npz"
        arrays = {"": data} if isinstance(data, np.ndarray) else {str(k): np.asarray(v) for k, v in data.items()}
        np.savez(path, **({"input": arrays[""]} if "" in arrays else arrays))
        return describe_data(path, None, labels, what)
    return describe_data(Path(data), recipe, labels, what)


def recipe_for(ref: DataRef | None) -> dict[str, Any] | None:
    return ref.recipe if ref is not None and ref.kind == "images" else None


# --- the worker process --------------------------------------------------------------------------------


def run_worker(request: dict[str, Any], workdir: Path, say: ProgressFn, timeout: float | None) -> dict[str, Any]:
    """Run converters.worker in a child; relay its progress; return its result or raise its error."""
    request_path = workdir / "request.json"
    request_path.write_text(json.dumps(request, indent=2))
    log_path = workdir / "worker.log"
    argv = [sys.executable, "-m", "converters.worker", str(request_path)]
    with log_path.open("w") as log:
        # Its own process group: stopping it also stops what it started (onnxsim).
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, cwd=workdir, env=_worker_env(), text=True, start_new_session=True
        )
        relay = _ProgressRelay(process, say)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ConversionError(f"conversion did not finish within {timeout:.0f} s", "raise --timeout") from exc
        finally:
            if process.poll() is None:  # timeout, Ctrl-C or an error in a progress callback
                _stop(process)
            relay.finish()
    return _read_worker_result(workdir, code, log_path)


def _stop(process: subprocess.Popen) -> None:
    """Kill the worker's process group (the worker and its children), then reap the worker."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


class _ProgressRelay:
    """Reads the worker's progress lines on a thread, so a silent worker cannot block a timeout."""

    def __init__(self, process: subprocess.Popen, say: ProgressFn) -> None:
        self.process = process
        self.say = say
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="edgetk-convert-progress", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for line in self.process.stdout or ():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            try:
                self.say(str(event.get("step", "")))
            except BaseException as exc:  # re-raised in the caller's thread by finish()
                self.error = exc
                _stop(self.process)
                return

    def finish(self) -> None:
        self.thread.join(timeout=10)
        if self.error is not None:
            raise self.error


def _worker_env() -> dict[str, str]:
    """The worker's environment: our Python's bin folder first on PATH, our packages importable."""
    env = dict(os.environ)
    # onnx2tf shells out to `onnxsim`, installed beside this Python; without it on PATH it would
    # silently skip simplification.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _read_worker_result(workdir: Path, code: int, log_path: Path) -> dict[str, Any]:
    result_path = workdir / "result.json"
    tail = _tail(log_path)
    if not result_path.exists():
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        raise ConversionError(
            f"the conversion worker {how} without a result" + (f": {tail[-1]}" if tail else ""),
            "the converter crashed (out of memory?); run with --debug to see its log",
            log_tail=tail,
        )
    result = json.loads(result_path.read_text())
    if not result.get("ok"):
        error = error_from_dict(result["error"])
        error.details.setdefault("log_tail", tail)
        raise error
    return result


# TensorFlow's start-up chatter (absl/cuda registration lines) says nothing about a failure.
_NOISE = ("W0000 ", "E0000 ", "I0000 ", "WARNING: All log messages before absl")


def _tail(path: Path, lines: int = 30) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip() and not line.startswith(_NOISE)][-lines:]


# --- metadata, validation, reports -------------------------------------------------------------------


def _finish_variants(
    source: Path,
    fmt: SourceFormat,
    worker: dict[str, Any],
    workdir: Path,
    recipe: dict[str, Any] | None,
    say: ProgressFn,
) -> dict[str, VariantResult]:
    source_info = {"format": fmt.name, "name": source.name, "sha256": meta.sha256_of(source)}
    evaluation = validate.Evaluation.load(workdir / "eval.npz")
    results = {}
    for name, produced in worker["variants"].items():
        path = Path(produced["path"])
        document = _metadata_for(name, source_info, worker, produced, recipe)
        meta.embed_metadata(path, document)
        say(f"validating {name} on {evaluation.count} samples")
        checked = validate.validate_variant(path, evaluation)
        results[name] = _variant_result(name, path, checked, worker, produced, source_info)
    return results


def _metadata_for(
    name: str, source: dict[str, Any], worker: dict[str, Any], produced: dict[str, Any], recipe: dict[str, Any] | None
) -> dict[str, Any]:
    spec = VARIANTS[name]
    per_channel = worker.get("per_channel", True)
    inputs = [
        _input_metadata(entry, produced["input_dtypes"][i], worker, recipe) for i, entry in enumerate(worker["inputs"])
    ]
    outputs = [_output_metadata(entry, produced["output_dtypes"][i]) for i, entry in enumerate(worker["outputs"])]
    return meta.build_metadata(
        variant=name,
        source=source,
        quantization=spec.quantization_metadata(per_channel),
        calibration=worker["calibration"] if spec.needs_calibration else None,
        inputs=inputs,
        outputs=outputs,
        converter=worker["converter"],
    )


def _input_metadata(entry: dict[str, Any], dtype: str, worker: dict[str, Any], recipe: dict[str, Any] | None):
    from converters.calibration import guess_layout

    rank = len(entry["source_shape"])
    source_layout, tflite_layout = layout_names(entry["perm"], guess_layout(tuple(entry["source_shape"])), rank)
    return {
        "name": entry["name"],
        "source_name": entry["source_name"],
        "source_shape": entry["source_shape"],
        "source_layout": source_layout,
        "shape": entry["shape"],
        "layout": tflite_layout,
        "perm": entry["perm"],
        "dtype": dtype,
        "normalization": _normalization(recipe),
    }


def _normalization(recipe: dict[str, Any] | None) -> dict[str, list[float]]:
    """How raw data becomes model input, x = (raw - mean) / std (pixel units for image recipes)."""
    if recipe is None:
        return {"mean": [0.0], "std": [1.0]}
    scale = float(recipe.get("scale", 1.0))
    return {
        "mean": [float(m) * scale for m in recipe.get("mean", [0.0])],
        "std": [float(s) * scale for s in recipe.get("std", [1.0])],
    }


def _output_metadata(entry: dict[str, Any], dtype: str) -> dict[str, Any]:
    return {
        "name": entry["name"],
        "source_name": entry["source_name"],
        "source_shape": entry["source_shape"],
        "shape": entry["shape"],
        "perm": entry["perm"],
        "dtype": dtype,
    }


def _variant_result(
    name: str,
    path: Path,
    checked: dict[str, Any],
    worker: dict[str, Any],
    produced: dict[str, Any],
    source: dict[str, Any],
) -> VariantResult:
    size = path.stat().st_size
    # Compare sizes before the (equal-sized) metadata was embedded: fp32 is exactly 1.0.
    ratio = produced["bytes"] / worker["fp32_size"] if worker.get("fp32_size") else None
    spec = VARIANTS[name]
    report = {
        "schema": REPORT_SCHEMA,
        "variant": name,
        "description": spec.summary,
        "model": {"path": path.name, "size_bytes": size, "sha256": meta.sha256_of(path)},
        "source": {**source, "reference_engine": worker["reference_engine"]},
        # bytes: the file; model_bytes: before the edgetk metadata was added (what the ratio uses).
        "size": {
            "bytes": size,
            "model_bytes": produced["bytes"],
            "fp32_model_bytes": worker.get("fp32_size"),
            "ratio_to_fp32": ratio,
        },
        "quantization": spec.quantization_metadata(worker.get("per_channel", True)),
        "calibration": worker["calibration"] if spec.needs_calibration else None,
        "evaluation": worker["evaluation"],
        "metrics": validate.worst(checked["outputs"]),
        "outputs": checked["outputs"],
        "accuracy": checked["accuracy"],
        "conversion_seconds": round(produced["seconds"], 3),
        "converter": worker["converter"],
    }
    report_path = path.with_name(f"{path.name[: -len('.tflite')]}.report.json")
    report_path.write_text(json.dumps(_json_safe(report), indent=2) + "\n")
    return VariantResult(name, path, report_path, size, ratio, report["metrics"], checked["accuracy"], report)


def _json_safe(value: Any) -> Any:
    """JSON has no infinities: an exact match's SNR is written as null."""
    from toolkit.output import to_jsonable

    return to_jsonable(value)


# --- putting files in place ----------------------------------------------------------------------------


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename finished files into out_dir (same filesystem: each rename is atomic)."""
    for path in sorted(staging.iterdir()):
        os.replace(path, out_dir / path.name)


def _relocated(result: VariantResult, out_dir: Path) -> VariantResult:
    result.tflite_path = out_dir / result.tflite_path.name
    result.report_path = out_dir / result.report_path.name
    return result


def _discard(workdir: Path, created_out_dir: Path | None, keep: bool) -> None:
    if keep:
        return
    shutil.rmtree(workdir, ignore_errors=True)
    if created_out_dir is not None:
        try:
            created_out_dir.rmdir()  # only if we created it and it stayed empty
        except OSError:
            pass


__all__ = ["ConversionResult", "ToolkitError", "VariantResult", "convert_model"]
