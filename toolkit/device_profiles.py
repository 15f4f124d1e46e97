"""Device profiles: what a class of device offers (OS, ABI, runtime, delegates, threads, thermal zones).

A profile is a YAML file in `profiles/` (or any path). It is validated strictly (extra keys are
errors, with file:line and a did-you-mean), delegate names are checked against the delegate
registry, and the `runner` section tells the profiler and farm how to run on the device.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from toolkit.errors import ConfigError
from toolkit.yamlconfig import load_config

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
ENV_VAR = "EDGETK_PROFILES"  # extra folders, os.pathsep-separated, searched before the built-in ones
OptionValue = str | int | float | bool


def _registry_names() -> list[str]:
    from delegates.registry import SPECS

    return [name for name in SPECS if name != "external"]


def _check_delegate_name(name: str, allow_auto: bool = False) -> str:
    """A registry name, `external:/path`, or (in preference lists) `auto`."""
    if name.startswith("external:") and len(name) > len("external:"):
        return name
    known = _registry_names() + (["auto"] if allow_auto else [])
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
        raise ValueError(f"unknown delegate {name!r}{hint}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DelegateEntry(_Strict):
    """Where a delegate's library lives on this device and the options to load it with."""

    library: str | None = None  # absolute path on the device; default: the registry's search paths
    options: dict[str, OptionValue] = Field(default_factory=dict)
    notes: str | None = None


class RunnerSection(_Strict):
    """How the profiler reaches and runs things on this device."""

    mode: Literal["python", "benchmark_model"] = "python"
    python: str = "python3"  # interpreter on the device (python mode)
    workdir: str = "~/.cache/edgetk"  # remote folder for the runner, models and results
    benchmark_model: str | None = None  # path of TFLite's benchmark_model binary on the device
    taskset: str | None = None  # CPU affinity mask for benchmark_model (e.g. f0 = big cores)
    accept_new_host_key: bool = False  # ssh: never accept unknown host keys silently unless set
    connect_timeout_s: float = Field(default=10.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for the runner (LD_LIBRARY_PATH...)

    @model_validator(mode="after")
    def _benchmark_model_needs_path(self) -> RunnerSection:
        if self.mode == "benchmark_model" and not self.benchmark_model:
            raise ValueError("mode benchmark_model needs `benchmark_model:` (the binary's path on the device)")
        return self


class DeviceProfile(_Strict):
    name: str
    description: str = ""
    os: Literal["linux", "android", "macos", "windows"]
    os_version: str | None = None
    android_api: int | None = Field(default=None, ge=21)
    abi: Literal["aarch64", "armv7l", "x86_64", "arm64-v8a", "armeabi-v7a"]
    soc: str | None = None
    cpu: str | None = None  # core layout, e.g. "4x Cortex-A76 @ 2.4 GHz"
    cores: int | None = Field(default=None, ge=1)
    accelerators: list[str] = Field(default_factory=list)  # human-readable: "Mali-G715 GPU", "Edge TPU (USB)"
    # The Python TFLite runtime the runner uses; None = the first installed (runner mode python only).
    runtime: Literal["ai_edge_litert", "tflite_runtime", "tensorflow"] | None = None
    delegates: dict[str, DelegateEntry] = Field(default_factory=dict)
    preferred_delegates: list[str] = Field(default_factory=lambda: ["xnnpack"])  # selection order
    threads: list[int] = Field(default_factory=lambda: [1])  # thread counts worth measuring
    # Types of the thermal zones to record (/sys/class/thermal/thermal_zone*/type, e.g. cpu-thermal);
    # the runner finds them by type and skips names this device does not have.
    thermal_zones: list[str] = Field(default_factory=list)
    runner: RunnerSection = Field(default_factory=RunnerSection)

    @field_validator("delegates")
    @classmethod
    def _known_delegates(cls, value: dict[str, DelegateEntry]) -> dict[str, DelegateEntry]:
        from delegates.registry import get_spec

        for name, entry in value.items():
            _check_delegate_name(name)
            spec = get_spec("external" if name.startswith("external:") else name)
            try:
                spec.validate_options(entry.options)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return value

    @field_validator("preferred_delegates")
    @classmethod
    def _known_preferences(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if not value:
            raise ValueError("list at least one delegate (e.g. xnnpack)")
        listed = info.data.get("delegates")  # absent when that section failed validation itself
        for name in value:
            _check_delegate_name(name, allow_auto=True)
            if listed is not None and name not in ("auto", "xnnpack", "cpu") and name not in listed:
                raise ValueError(f"preferred delegate {name!r} has no entry under `delegates:`")
        return value

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, value: list[int]) -> list[int]:
        if not value or any(t < 1 for t in value):
            raise ValueError("thread counts must be whole numbers >= 1")
        return value

    def delegate_settings(self) -> dict[str, dict[str, Any]]:
        """The `delegates` section as plain dicts (library, options) for delegates.select_delegate."""
        return {name: {"library": e.library, "options": dict(e.options)} for name, e in self.delegates.items()}


# --- finding and loading ------------------------------------------------------------------------------


def profile_dirs() -> list[Path]:
    """Folders searched for `<name>.yaml`: $EDGETK_PROFILES, ~/.config/edgetk/profiles, the shipped ones.

    The shipped ones are the repository's profiles/ (editable installs) or, for a wheel that
    installs them as data files, <prefix>/share/edgetk/profiles.
    """
    extra = [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    installed = Path(sys.prefix) / "share" / "edgetk" / "profiles"
    return [*extra, Path("~/.config/edgetk/profiles").expanduser(), PROFILE_DIR, installed]


def list_profiles() -> list[str]:
    """Names of every profile found (first folder wins on duplicates)."""
    names: dict[str, Path] = {}
    for folder in profile_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                names.setdefault(path.stem, path)
    return sorted(names)


def profile_path(name_or_path: str | Path) -> Path:
    """The file for a profile name or path; ConfigError with a suggestion when there is none."""
    text = str(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.suffix in (".yaml", ".yml") or os.sep in text:
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: profile file not found", "check the path")
        return candidate
    for folder in profile_dirs():
        path = folder / f"{text}.yaml"
        if path.is_file():
            return path
    known = list_profiles()
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.5)
    suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"unknown device profile {text!r}{suggestion}",
        f"known profiles: {', '.join(known)}; or pass a path to a .yaml file",
    )


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load and validate a profile by name (profiles/<name>.yaml) or path."""
    return load_config(DeviceProfile, profile_path(name_or_path))
