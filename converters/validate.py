"""Validation of converted variants against the source model's outputs.

The TFLite side runs through `delegates.open_model(path, choice=None)` -- the same runner the
profiler uses, fed in the source layout via the edgetk metadata we just embedded, so validation
also proves the metadata is right. The reference outputs come from the conversion worker
(onnxruntime for ONNX, TensorFlow for Keras/SavedModel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Evaluation:
    """Evaluation inputs and reference outputs as written by the worker."""

    inputs: dict[str, np.ndarray]  # source input name -> (N, ...) source layout
    reference: dict[str, np.ndarray]  # source output name -> (N, ...)
    labels: np.ndarray | None

    @property
    def count(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    @classmethod
    def load(cls, path: Path) -> Evaluation:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        inputs = {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith("input:")}
        reference = {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith("reference:")}
        return cls(inputs, reference, arrays.get("labels"))


def run_variant(path: Path, evaluation: Evaluation) -> dict[str, np.ndarray]:
    """The variant's outputs on every evaluation sample, float, source layout, stacked."""
    from delegates import open_model

    runner = open_model(path, choice=None)
    collected: dict[str, list[np.ndarray]] = {}
    for index in range(evaluation.count):
        sample = {name: array[index : index + 1] for name, array in evaluation.inputs.items()}
        for name, value in runner.invoke(sample).items():
            collected.setdefault(name, []).append(np.asarray(value, dtype=np.float32))
    return {name: np.concatenate(values) for name, values in collected.items()}


def output_metrics(actual: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    """Error statistics of one output over all samples (axis 0 is the sample axis)."""
    actual = actual.astype(np.float64).reshape(expected.shape)
    expected = expected.astype(np.float64)
    difference = actual - expected
    signal = float(np.sum(expected**2))
    noise = float(np.sum(difference**2))
    metrics: dict[str, Any] = {
        "max_abs_error": float(np.max(np.abs(difference))) if difference.size else 0.0,
        "mean_abs_error": float(np.mean(np.abs(difference))) if difference.size else 0.0,
        "cosine": cosine(actual.ravel(), expected.ravel()),
        "snr_db": _snr_db(signal, noise),
        "top1_agreement": None,
    }
    if is_classifier_like(expected):
        # A constant output (e.g. int8 softmax rounding every score to 0) agrees with nothing.
        flat = actual.reshape(actual.shape[0], -1)
        decided = flat.max(axis=1) > flat.min(axis=1)
        metrics["top1_agreement"] = float(np.mean((top1(actual) == top1(expected)) & decided))
    return metrics


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return 1.0 if not np.any(a) and not np.any(b) else 0.0
    return float(np.dot(a, b) / norm)


def _snr_db(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def is_classifier_like(outputs: np.ndarray) -> bool:
    """Per-sample outputs that are one vector of >= 2 scores (e.g. [N, 10] or [N, 1000, 1, 1])."""
    per_sample = [d for d in outputs.shape[1:] if d != 1]
    return len(per_sample) == 1 and per_sample[0] >= 2 and outputs.dtype.kind == "f"


def top1(outputs: np.ndarray) -> np.ndarray:
    return outputs.reshape(outputs.shape[0], -1).argmax(axis=1)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(top1(outputs) == labels.reshape(-1)))


def classifier_output(reference: dict[str, np.ndarray]) -> str | None:
    """The first classifier-like output (used for top-1 agreement and task accuracy)."""
    return next((name for name, values in reference.items() if is_classifier_like(values)), None)


def validate_variant(path: Path, evaluation: Evaluation) -> dict[str, Any]:
    """Per-output metrics and task accuracy of one converted variant."""
    outputs = run_variant(path, evaluation)
    per_output = [
        {"name": name, **output_metrics(outputs[name], expected)} for name, expected in evaluation.reference.items()
    ]
    result: dict[str, Any] = {"outputs": per_output, "accuracy": None}
    label_output = classifier_output(evaluation.reference)
    if evaluation.labels is not None and label_output is not None:
        result["accuracy"] = {
            "output": label_output,
            "variant": accuracy(outputs[label_output], evaluation.labels),
            "source": accuracy(evaluation.reference[label_output], evaluation.labels),
        }
        result["accuracy"]["delta_points"] = 100.0 * (result["accuracy"]["variant"] - result["accuracy"]["source"])
    return result


def worst(per_output: list[dict[str, Any]]) -> dict[str, Any]:
    """One row's worth of numbers: the worst value of each metric across outputs."""

    def pick(key: str, choose: Any) -> Any:
        values = [o[key] for o in per_output if o.get(key) is not None]
        return choose(values) if values else None

    return {
        "max_abs_error": pick("max_abs_error", max),
        "mean_abs_error": pick("mean_abs_error", max),
        "cosine": pick("cosine", min),
        "snr_db": pick("snr_db", min),
        "top1_agreement": pick("top1_agreement", min),
    }
