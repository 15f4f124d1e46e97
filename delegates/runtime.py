"""The runtime shim: one way to reach whichever TFLite Python runtime is installed.

Preference order: ai_edge_litert, then tflite_runtime, then tensorflow.lite. The environment
variable EDGETK_RUNTIME or an explicit name overrides the order. When none is importable, one
MissingDependencyError names the pip command (STYLE.md #2).
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

from toolkit.errors import MissingDependencyError

ENV_VAR = "EDGETK_RUNTIME"


@dataclass(frozen=True)
class RuntimeSpec:
    """How to reach one TFLite Python runtime."""

    name: str
    module: str  # the module that holds Interpreter, load_delegate and OpResolverType
    package: str  # pip distribution name
    version_module: str  # where __version__ lives
    aliases: tuple[str, ...] = ()
    # Raises ValueError on truncated/corrupted files instead of segfaulting (FIELD-NOTES).
    survives_bad_files: bool = False
    # XNNPACK applies to int8 (QS8) graphs; tflite-runtime 2.14's build never does.
    xnnpack_int8: bool = True
    weaknesses: tuple[str, ...] = ()


RUNTIMES: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in (
        RuntimeSpec(
            "ai_edge_litert",
            "ai_edge_litert.interpreter",
            "ai-edge-litert",
            "ai_edge_litert",
            aliases=("litert", "ai-edge-litert"),
            survives_bad_files=True,
        ),
        RuntimeSpec(
            "tflite_runtime",
            "tflite_runtime.interpreter",
            "tflite-runtime",
            "tflite_runtime",
            aliases=("tflite", "tflite-runtime"),
            xnnpack_int8=False,
            weaknesses=(
                "tflite-runtime never applies XNNPACK to int8 models (int8 runs on the reference "
                "kernels, ~10x slower); install ai-edge-litert for int8",
            ),
        ),
        RuntimeSpec(
            "tensorflow",
            "tensorflow.lite.python.interpreter",
            "tensorflow",
            "tensorflow",
            aliases=("tf", "tensorflow.lite", "tf.lite"),
        ),
    )
}
ORDER: tuple[str, ...] = ("ai_edge_litert", "tflite_runtime", "tensorflow")
INSTALL_HINT = (
    "pip install ai-edge-litert  (or: pip install 'edgetk[runtime]'; on 32-bit Pi OS: pip install tflite-runtime)"
)


@dataclass(frozen=True)
class Runtime:
    """An imported runtime: its spec, version and interpreter module."""

    spec: RuntimeSpec
    version: str
    module: Any

    @property
    def name(self) -> str:
        return self.spec.name

    def interpreter(self, model_path: str, *, threads: int | None, default_delegates: bool, delegates: list) -> Any:
        """Create an Interpreter (not yet allocated)."""
        resolver = self.module.OpResolverType
        kind = resolver.BUILTIN if default_delegates else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite's deprecation notice on every Interpreter
            return self.module.Interpreter(
                model_path=model_path,
                num_threads=threads,
                experimental_delegates=delegates or None,
                experimental_op_resolver_type=kind,
            )

    def load_delegate(self, library: str, options: dict[str, Any] | None = None) -> Any:
        """Load an external delegate library (raises ValueError/OSError when it cannot)."""
        return self.module.load_delegate(library, options or {})

    def info(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


def resolve_name(name: str) -> str:
    """Canonical runtime name for a name or alias; MissingDependencyError-free, ValueError if unknown."""
    wanted = name.strip().lower()
    for spec in RUNTIMES.values():
        if wanted == spec.name or wanted in spec.aliases:
            return spec.name
    raise ValueError(name)


def get_runtime(name: str | None = None) -> Runtime:
    """The runtime named (or from EDGETK_RUNTIME), else the first installed in ORDER."""
    requested = name or os.environ.get(ENV_VAR) or None
    if requested:
        return _load_named(requested)
    problems = []
    for candidate in ORDER:
        try:
            return _load(candidate)
        except ImportError as exc:
            problems.append(f"{candidate}: {exc}")
    raise MissingDependencyError(
        "no TFLite runtime is installed (tried ai_edge_litert, tflite_runtime, tensorflow.lite)",
        f"install one: {INSTALL_HINT}",
        tried=problems,
    )


def _load_named(requested: str) -> Runtime:
    from toolkit.errors import ConfigError

    try:
        canonical = resolve_name(requested)
    except ValueError:
        raise ConfigError(
            f"unknown TFLite runtime {requested!r}",
            f"use one of {', '.join(ORDER)} (set by --runtime or {ENV_VAR})",
        ) from None
    try:
        return _load(canonical)
    except ImportError as exc:
        spec = RUNTIMES[canonical]
        raise MissingDependencyError(
            f"TFLite runtime {canonical!r} is not installed here ({exc})",
            f"pip install {spec.package}, or pick another runtime (unset {ENV_VAR} to auto-detect)",
        ) from exc


@cache
def _load(name: str) -> Runtime:
    spec = RUNTIMES[name]
    module = importlib.import_module(spec.module)
    return Runtime(spec, _version(spec), module)


def _version(spec: RuntimeSpec) -> str:
    """The package's own __version__ (imported already), else the distribution's metadata.

    importlib.metadata costs ~25 ms to import: a fifth of a micro-model's whole profile on a device.
    """
    version = getattr(importlib.import_module(spec.version_module), "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as distribution_version

        return distribution_version(spec.package)
    except Exception:  # not installed as a distribution (vendored, zipapp)
        return "unknown"


def installed_runtimes() -> list[dict[str, Any]]:
    """Every known runtime, whether it is installed here and its version (for `edgetk delegates`).

    tensorflow is looked up in the package metadata, not imported: importing it costs ~2 s and
    ~500 MiB just to print a version.
    """
    out = []
    for name in ORDER:
        spec = RUNTIMES[name]
        entry: dict[str, Any] = {"name": name, "package": spec.package}
        if name == "tensorflow":
            version = _distribution_version(spec.package)
            entry.update(installed=version is not None, version=version)
            if version is None:
                entry["error"] = "not installed"
            out.append(entry)
            continue
        try:
            runtime = _load(name)
            entry.update(installed=True, version=runtime.version)
        except ImportError as exc:
            entry.update(installed=False, version=None, error=str(exc))
        out.append(entry)
    return out


def _distribution_version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def runtime_warnings(runtime: Runtime, *, int8_model: bool, delegate: str | None) -> list[str]:
    """Known weaknesses of this runtime that matter for this model and delegate."""
    if delegate == "xnnpack" and int8_model and not runtime.spec.xnnpack_int8:
        return [f"{runtime.name} {runtime.version}: {runtime.spec.weaknesses[0]}"]
    return []
