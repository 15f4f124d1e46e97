"""Conversion on the controller, once per (model, variant), cached by content hash, before dispatch.

The cache folder of a source model is named after its identity (a hash of the source file, the
calibration data and the conversion options), so an edited model or new calibration data converts
again while a resumed farm finds everything in place. A variant counts as cached when its
`<stem>.<variant>.tflite` exists; files are moved in from a temporary folder (report first, model
last), so an interrupted conversion never leaves a model that looks complete.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.errors import ConversionError, ToolkitError
from toolkit.farm.plan import ModelUnit, file_sha256

ARTIFACT_KEY = tuple[str, str | None]  # (model label, variant)


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A .tflite ready to profile."""

    model: str
    variant: str | None
    path: Path
    sha256: str
    size: int

    def model_section(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.path.name,
            "sha256": self.sha256,
            "size_bytes": self.size,
            "variant": self.variant,
        }


@dataclasses.dataclass(frozen=True)
class ConversionFailure:
    """Why a (model, variant) could not be produced; its jobs are stored as failed with this error."""

    model: str
    variant: str | None
    error: ToolkitError


def cache_folder(cache_dir: Path, unit: ModelUnit) -> Path:
    return cache_dir / f"{unit.label}-{unit.identity[:16]}"


def variant_path(folder: Path, unit: ModelUnit, variant: str) -> Path:
    stem = unit.path.name.split(".")[0]
    return folder / f"{stem}.{variant}.tflite"


def prepare_artifacts(
    units: list[ModelUnit],
    wanted: set[ARTIFACT_KEY],
    cache_dir: Path,
    on_event: Callable[[dict[str, Any]], None] = lambda event: None,
) -> tuple[dict[ARTIFACT_KEY, Artifact], list[ConversionFailure]]:
    """Make every wanted (model, variant) available, converting only what the cache lacks."""
    artifacts: dict[ARTIFACT_KEY, Artifact] = {}
    failures: list[ConversionFailure] = []
    for unit in units:
        variants = sorted({v for (label, v) in wanted if label == unit.label}, key=str)
        if not variants:
            continue
        if unit.is_tflite:
            artifacts[(unit.label, variants[0])] = _artifact(unit.label, variants[0], unit.path)
            continue
        made, failed = _convert_unit(unit, [v for v in variants if v is not None], cache_dir, on_event)
        artifacts.update(made)
        failures += failed
    return artifacts, failures


def _artifact(label: str, variant: str | None, path: Path) -> Artifact:
    return Artifact(label, variant, path, file_sha256(path), path.stat().st_size)


def _convert_unit(
    unit: ModelUnit, variants: list[str], cache_dir: Path, on_event: Callable[[dict[str, Any]], None]
) -> tuple[dict[ARTIFACT_KEY, Artifact], list[ConversionFailure]]:
    folder = cache_folder(cache_dir, unit)
    missing = [v for v in variants if not variant_path(folder, unit, v).exists()]
    for variant in variants:
        if variant not in missing:
            on_event({"event": "conversion_cached", "model": unit.label, "variant": variant})
    failures: list[ConversionFailure] = []
    if missing:
        on_event({"event": "conversion_started", "model": unit.label, "variants": missing})
        try:
            convert_into_cache(unit, missing, folder)
        except ToolkitError as error:
            failures = [ConversionFailure(unit.label, v, error) for v in missing]
            on_event({"event": "conversion_failed", "model": unit.label, "variants": missing, "error": error.to_dict()})
        else:
            on_event({"event": "conversion_finished", "model": unit.label, "variants": missing})
    made = {}
    for variant in variants:
        path = variant_path(folder, unit, variant)
        if path.exists():
            made[(unit.label, variant)] = _artifact(unit.label, variant, path)
        elif not any(f.variant == variant for f in failures):
            failures.append(_not_written(unit, variant))
    return made, failures


def _not_written(unit: ModelUnit, variant: str) -> ConversionFailure:
    error = ConversionError(
        f"{unit.path.name}: the converter wrote no {variant} model",
        "run `edgetk convert` on the model with this variant to see why",
    )
    return ConversionFailure(unit.label, variant, error)


def convert_into_cache(unit: ModelUnit, variants: list[str], folder: Path) -> None:
    """Run the converter into a temporary folder, then move its outputs into the cache folder."""
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        run_converter(unit, variants, scratch)
        for variant in variants:
            _move_variant(scratch, folder, unit, variant)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _move_variant(scratch: Path, folder: Path, unit: ModelUnit, variant: str) -> None:
    produced = variant_path(scratch, unit, variant)
    if not produced.exists():
        return
    report = produced.with_name(produced.name[: -len(".tflite")] + ".report.json")
    if report.exists():
        report.replace(folder / report.name)
    produced.replace(variant_path(folder, unit, variant))  # last: its presence means "cached"


def run_converter(unit: ModelUnit, variants: list[str], out_dir: Path) -> Any:
    """Call the converters package (imported here: it pulls in TensorFlow)."""
    try:
        from converters import convert_model
    except ImportError as exc:
        from toolkit.errors import MissingDependencyError

        raise MissingDependencyError(
            "converting source models needs the converters' dependencies",
            "pip install 'edgetk[convert]', or list ready .tflite files",
        ) from exc
    kwargs: dict[str, Any] = dict(unit.convert_options)
    if unit.calibration is not None:
        kwargs["calibration"] = str(unit.calibration)
    if unit.evaluation is not None:
        kwargs["evaluation"] = str(unit.evaluation)
    if unit.synthetic_calibration:
        kwargs["synthetic_calibration"] = True
    out_dir.mkdir(parents=True, exist_ok=True)
    return convert_model(str(unit.path), str(out_dir), variants=variants, **kwargs)
