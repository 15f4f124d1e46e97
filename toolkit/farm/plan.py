"""Expand a farm file into its jobs: one per (model, variant, device, delegate request, threads).

Each job has a stable key, a hash of everything that decides what is measured (farm name, the
model's content hash and conversion inputs, variant, device, delegate request, threads, settings).
The store keeps one row per key, which is what makes `farm run` resumable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from toolkit.errors import ConfigError
from toolkit.farm.config import (
    DEFAULT_VARIANTS,
    QUANTIZED_NEEDING_CALIBRATION,
    TAG_PREFIX,
    DeviceSpec,
    LoadedFarm,
    ModelSpec,
)

# Conventional calibration files looked up beside a source model when the farm file names none.
CALIBRATION_CANDIDATES = ("{stem}.calib.npz", "{stem}.calib.npy", "calib.npz", "calib.npy", "calibration.npz")


@dataclasses.dataclass(frozen=True)
class ModelUnit:
    """One model as the farm sees it: where it comes from and what identifies its content."""

    label: str
    path: Path  # source model or ready .tflite
    is_tflite: bool
    identity: str  # content hash of the model plus the conversion inputs that change its output
    source_sha256: str
    variants: tuple[str, ...]
    calibration: Path | None
    evaluation: Path | None
    synthetic_calibration: bool
    convert_options: tuple[tuple[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class Job:
    """One cell of the matrix."""

    job_id: str
    farm: str
    model: str  # model label
    variant: str | None
    model_identity: str
    device: str
    delegates: tuple[str, ...] | None  # None: the device profile's preferred order
    threads: int | None
    settings: tuple[tuple[str, Any], ...]

    @property
    def delegate_label(self) -> str:
        return ",".join(self.delegates) if self.delegates else "default"

    @property
    def threads_label(self) -> str:
        return str(self.threads) if self.threads else "default"

    def describe(self) -> str:
        return (
            f"{self.model}/{self.variant or '-'} on {self.device} [{self.delegate_label}, threads={self.threads_label}]"
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["delegates"] = list(self.delegates) if self.delegates else None
        out["settings"] = dict(self.settings)
        return out


def file_sha256(path: Path) -> str:
    """Content hash of a file, or of every file under a folder (SavedModel) in a stable order."""
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode() + b"\0")
            _hash_into(digest, child)
    else:
        _hash_into(digest, path)
    return digest.hexdigest()


def _hash_into(digest: Any, path: Path) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def stable_hash(payload: Any, length: int = 24) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def model_units(farm: LoadedFarm) -> list[ModelUnit]:
    """Resolve, check and hash every model of the farm."""
    return [_model_unit(farm, spec) for spec in farm.config.models]


def _model_unit(farm: LoadedFarm, spec: ModelSpec) -> ModelUnit:
    path = farm.resolve(spec.path)
    if not path.exists():
        raise ConfigError(
            f"{farm.path}: models: {spec.path}: file not found", "check the path (relative to the farm file)"
        )
    sha = file_sha256(path)
    if spec.is_tflite:
        variant = _tflite_variant(path)
        return ModelUnit(spec.label, path, True, sha, sha, (variant,) if variant else (), None, None, False)
    calibration = farm.resolve(spec.calibration) if spec.calibration else _find_calibration(path)
    evaluation = farm.resolve(spec.evaluation) if spec.evaluation else None
    variants = tuple(spec.variants or _default_variants(calibration, spec.synthetic_calibration))
    _check_calibration(farm, spec, variants, calibration)
    identity_inputs = {
        "source": sha,
        "calibration": file_sha256(calibration) if calibration else None,
        "synthetic": spec.synthetic_calibration,
        "options": spec.convert_options,
    }
    return ModelUnit(
        label=spec.label,
        path=path,
        is_tflite=False,
        identity=stable_hash(identity_inputs, 32),
        source_sha256=sha,
        variants=variants,
        calibration=calibration,
        evaluation=evaluation,
        synthetic_calibration=spec.synthetic_calibration,
        convert_options=tuple(sorted(spec.convert_options.items())),
    )


def _find_calibration(model_path: Path) -> Path | None:
    stem = model_path.name.split(".")[0]
    for pattern in CALIBRATION_CANDIDATES:
        candidate = model_path.parent / pattern.format(stem=stem)
        if candidate.exists():
            return candidate
    return None


def _default_variants(calibration: Path | None, synthetic: bool) -> list[str]:
    if calibration or synthetic:
        return list(DEFAULT_VARIANTS)
    return [v for v in DEFAULT_VARIANTS if v not in QUANTIZED_NEEDING_CALIBRATION]


def _check_calibration(farm: LoadedFarm, spec: ModelSpec, variants: Iterable[str], calibration: Path | None) -> None:
    needing = sorted(set(variants) & QUANTIZED_NEEDING_CALIBRATION)
    if needing and calibration is None and not spec.synthetic_calibration:
        raise ConfigError(
            f"{farm.path}: models: {spec.path}: variants {', '.join(needing)} need calibration data",
            "add `calibration: data.npz` to the model (or `synthetic_calibration: true` to accept random data)",
        )
    if calibration is not None and not calibration.exists():
        raise ConfigError(f"{farm.path}: models: {spec.path}: calibration {calibration} not found", "check the path")


def _tflite_variant(path: Path) -> str | None:
    """The variant recorded in the converter's metadata, when the delegates package can read it."""
    try:
        from delegates.metadata import read_metadata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        metadata = read_metadata(str(path)) or {}
    except Exception:  # a foreign or damaged file: the device run will report it properly
        return None
    return metadata.get("variant")


def delegate_request(entry: str | list[str]) -> tuple[str, ...] | None:
    """A matrix delegate entry as a request: "default" -> None, "gpu,xnnpack" -> ("gpu", "xnnpack")."""
    names = entry.split(",") if isinstance(entry, str) else list(entry)
    names = [n.strip() for n in names if n.strip()]
    return None if names in ([], ["default"]) else tuple(names)


def select_devices(farm: LoadedFarm) -> list[DeviceSpec]:
    """The enabled devices the matrix names (by name or `tag:NAME`), in farm-file order."""
    devices = [d for d in farm.config.devices if d.enabled]
    wanted = farm.config.matrix.devices
    if wanted is None:
        return devices
    chosen: set[str] = set()
    for entry in wanted:
        if entry.startswith(TAG_PREFIX):
            chosen |= {d.name for d in devices if entry[len(TAG_PREFIX) :] in d.tags}
        else:
            chosen.add(entry)
    return [d for d in devices if d.name in chosen]


def _excluded(rules: list[dict[str, Any]], cell: dict[str, Any]) -> bool:
    return any(all(str(cell.get(k)) == str(v) for k, v in rule.items()) for rule in rules)


def expand(farm: LoadedFarm, units: list[ModelUnit] | None = None) -> list[Job]:
    """Every job of the farm, ordered so that each device's jobs stay grouped by model and variant."""
    units = units if units is not None else model_units(farm)
    matrix = farm.config.matrix
    settings = effective_settings(farm)
    settings_items = tuple(sorted(settings.items()))
    jobs: list[Job] = []
    for device in select_devices(farm):
        for unit in units:
            for variant in _unit_variants(unit, matrix.variants):
                for entry in matrix.delegates:
                    request = delegate_request(entry)
                    for threads in matrix.threads:
                        cell = {
                            "model": unit.label,
                            "variant": variant,
                            "device": device.name,
                            "delegate": ",".join(request) if request else "default",
                            "threads": threads,
                        }
                        if _excluded(matrix.exclude, cell):
                            continue
                        key = stable_hash(
                            [farm.name, unit.label, unit.identity, variant, device.name, request, threads, settings]
                        )
                        jobs.append(
                            Job(
                                key,
                                farm.name,
                                unit.label,
                                variant,
                                unit.identity,
                                device.name,
                                request,
                                threads,
                                settings_items,
                            )
                        )
    return jobs


def _unit_variants(unit: ModelUnit, wanted: list[str] | None) -> list[str | None]:
    if unit.is_tflite:
        variant = unit.variants[0] if unit.variants else None
        return [variant] if wanted is None or variant is None or variant in wanted else []
    return [v for v in unit.variants if wanted is None or v in wanted]


def effective_settings(farm: LoadedFarm) -> dict[str, Any]:
    """The profiler settings with the farm's cooldown folded in."""
    settings = farm.config.settings.model_dump()
    cooldown = farm.config.cooldown
    if cooldown.below_c is not None:
        settings["cooldown_below_c"] = cooldown.below_c
        settings["cooldown_max_s"] = cooldown.max_wait_s
    return settings
