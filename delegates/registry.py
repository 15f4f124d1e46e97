"""The delegate registry: one frozen spec per delegate (STYLE.md #1).

A spec knows its library file names per platform, where to look for them, its option schema
(validated, with did-you-mean), what it needs from a model, how the benchmark_model binary
spells it, and which loader turns the library into something the Interpreter accepts. Adding a
delegate is adding one spec to SPECS.
"""

from __future__ import annotations

import ctypes
import difflib
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delegates.choice import CPU, XNNPACK, DelegateChoice
from toolkit.errors import ConfigError, DelegateError

LINUX_LIB_DIRS = (
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/arm-linux-gnueabihf",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib",
    "/usr/local/lib",
    "/lib",
)
ANDROID_LIB_DIRS = ("/data/local/tmp", "/vendor/lib64", "/system/vendor/lib64", "/system/lib64", "/odm/lib64")


# --- options ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptionSpec:
    """One key=value option a delegate library accepts."""

    key: str
    kind: str  # bool | int | float | str | choice
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    benchmark_flag: str | None = None  # the benchmark_model flag carrying this option, if any

    def normalize(self, value: Any, delegate: str) -> str:
        """The option as the string the library receives; ConfigError when invalid."""
        text = _option_text(value)
        checker = _CHECKERS[self.kind]
        problem = checker(self, text)
        if problem:
            raise ConfigError(
                f"delegate {delegate}: option {self.key}={text!r}: {problem}",
                f"{self.key}: {self.help}",
            )
        return text.lower() if self.kind == "bool" else text


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _check_bool(spec: OptionSpec, text: str) -> str | None:
    return None if text.lower() in ("true", "false", "1", "0") else "expected true or false"


def _check_number(spec: OptionSpec, text: str) -> str | None:
    try:
        number = int(text) if spec.kind == "int" else float(text)
    except ValueError:
        return f"expected {'a whole number' if spec.kind == 'int' else 'a number'}"
    if spec.minimum is not None and number < spec.minimum:
        return f"must be >= {spec.minimum:g}"
    if spec.maximum is not None and number > spec.maximum:
        return f"must be <= {spec.maximum:g}"
    return None


def _check_choice(spec: OptionSpec, text: str) -> str | None:
    if text in spec.choices:
        return None
    return f"expected one of {', '.join(spec.choices)}{_did_you_mean(text, spec.choices)}"


def _check_str(spec: OptionSpec, text: str) -> str | None:
    return None if text else "must not be empty"


_CHECKERS = {
    "bool": _check_bool,
    "int": _check_number,
    "float": _check_number,
    "choice": _check_choice,
    "str": _check_str,
}


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- model requirements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRequirements:
    """What a delegate needs from a model before it is worth loading."""

    integer_only: bool = False  # every compute op on int8/uint8 tensors (Edge TPU, Hexagon)
    edgetpu_compiled: bool = False  # the graph must contain edgetpu-custom-op
    op_table: str | None = None  # name of the op-support table in delegates.compat (gpu, nnapi)
    notes: str = ""


# --- specs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DelegateSpec:
    """Everything edgetk knows about one delegate."""

    name: str
    summary: str
    loader: str  # builtin | plugin (tflite_plugin_create_delegate) | gpu_v2 (TfLiteGpuDelegateV2Create)
    libraries: dict[str, tuple[str, ...]] = field(default_factory=dict)  # platform -> file names
    search_paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    options: tuple[OptionSpec, ...] = ()
    requirements: ModelRequirements = ModelRequirements()
    benchmark_flag: str | None = None  # how benchmark_model enables it (--use_gpu=true)
    threads_option: str | None = None  # option key that receives the thread count, if the library takes one
    strict_options: bool = True  # external: passes unknown keys through

    def option(self, key: str) -> OptionSpec | None:
        return next((o for o in self.options if o.key == key), None)

    def validate_options(self, options: dict[str, Any] | None) -> dict[str, str]:
        """Check and normalize options; unknown keys get a did-you-mean."""
        out: dict[str, str] = {}
        for key, value in (options or {}).items():
            spec = self.option(str(key))
            if spec is None:
                if not self.strict_options:
                    out[str(key)] = _option_text(value)
                    continue
                known = [o.key for o in self.options]
                raise ConfigError(
                    f"delegate {self.name}: unknown option {key!r}{_did_you_mean(str(key), known)}",
                    f"{self.name} takes: {', '.join(known) or 'no options'}",
                )
            out[spec.key] = spec.normalize(value, self.name)
        return out

    def library_names(self, target: str | None = None) -> tuple[str, ...]:
        return self.libraries.get(target or current_platform(), ())

    def available_on(self, target: str | None = None) -> bool:
        return self.loader == "builtin" or bool(self.library_names(target))


def _opt(key: str, kind: str, help: str, **kw: Any) -> OptionSpec:
    if "choices" in kw:
        kw["choices"] = tuple(kw["choices"])
    return OptionSpec(key, kind, help, **kw)


SPECS: dict[str, DelegateSpec] = {
    spec.name: spec
    for spec in (
        DelegateSpec(
            CPU,
            "Plain builtin CPU kernels without default delegates: the numerical reference.",
            "builtin",
        ),
        DelegateSpec(
            XNNPACK,
            "XNNPACK, built into every runtime (applied as the default CPU delegate).",
            "builtin",
            options=(
                _opt(
                    "fp16",
                    "bool",
                    "run float models in fp16 where the CPU supports it (benchmark_model only; "
                    "the Python runtimes do not expose it)",
                    benchmark_flag="--xnnpack_force_fp16",
                ),
            ),
            benchmark_flag="--use_xnnpack=true",
        ),
        DelegateSpec(
            "gpu",
            "TFLite GPU delegate (OpenCL/OpenGL ES; Mali, Adreno, PowerVR).",
            "gpu_v2",
            libraries={
                "linux": ("libtensorflowlite_gpu_delegate.so",),
                "android": ("libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so"),
                "darwin": ("libtensorflowlite_gpu_delegate.dylib",),
            },
            search_paths={"linux": LINUX_LIB_DIRS, "android": ANDROID_LIB_DIRS},
            options=(
                _opt(
                    "precision",
                    "choice",
                    "fp16 allows precision loss for speed, fp32 keeps full precision",
                    choices=("fp16", "fp32"),
                    benchmark_flag="--gpu_precision_loss_allowed",
                ),
                _opt(
                    "backend",
                    "choice",
                    "force the OpenCL or OpenGL backend (default: OpenCL, then GL)",
                    choices=("cl", "gl", "auto"),
                    benchmark_flag="--gpu_backend",
                ),
                _opt(
                    "inference_preference",
                    "choice",
                    "fast_single_answer (one-shot) or sustained_speed (video, repeated runs)",
                    choices=("fast_single_answer", "sustained_speed", "balanced"),
                ),
                _opt(
                    "quantized",
                    "bool",
                    "run quantized models on the GPU",
                    benchmark_flag="--gpu_experimental_enable_quant",
                ),
                _opt("serialization_dir", "str", "folder to cache compiled kernels between runs"),
                _opt("model_token", "str", "cache key of this model inside serialization_dir"),
            ),
            requirements=ModelRequirements(op_table="gpu", notes="float or fp16 models; int8 with quantized=true"),
            benchmark_flag="--use_gpu=true",
        ),
        DelegateSpec(
            "nnapi",
            "Android Neural Networks API (vendor NPU/DSP/GPU drivers; deprecated since Android 15).",
            "plugin",
            libraries={"android": ("libtensorflowlite_nnapi_delegate.so",)},
            search_paths={"android": ANDROID_LIB_DIRS},
            options=(
                _opt(
                    "accelerator_name",
                    "str",
                    "NNAPI device to use (e.g. google-edgetpu, qti-dsp); see `adb shell dumpsys` for names",
                    benchmark_flag="--nnapi_accelerator_name",
                ),
                _opt(
                    "execution_preference",
                    "choice",
                    "what the driver optimizes for",
                    choices=("fast_single_answer", "sustained_speed", "low_power"),
                    benchmark_flag="--nnapi_execution_preference",
                ),
                _opt("allow_fp16", "bool", "let fp32 ops run in fp16", benchmark_flag="--nnapi_allow_fp16"),
                _opt(
                    "disable_cpu",
                    "bool",
                    "forbid the nnapi-reference CPU device (fail instead of running slowly)",
                    benchmark_flag="--disable_nnapi_cpu",
                ),
            ),
            requirements=ModelRequirements(op_table="nnapi", notes="Android 8.1+; best with int8 or fp16"),
            benchmark_flag="--use_nnapi=true",
        ),
        DelegateSpec(
            "edgetpu",
            "Coral Edge TPU (USB, M.2, PCIe) through libedgetpu.",
            "plugin",
            libraries={
                "linux": ("libedgetpu.so.1",),
                "darwin": ("libedgetpu.1.dylib",),
                "windows": ("edgetpu.dll",),
            },
            search_paths={
                "linux": LINUX_LIB_DIRS,
                "darwin": ("/usr/local/lib", "/opt/homebrew/lib"),
                "windows": ("C:\\Windows\\System32",),
            },
            options=(
                _opt(
                    "device",
                    "str",
                    "which Edge TPU: usb, usb:0, pci, pci:0 or :0 (first of any kind)",
                ),
            ),
            requirements=ModelRequirements(
                integer_only=True,
                edgetpu_compiled=True,
                notes="full-int8 model compiled with edgetpu_compiler (contains edgetpu-custom-op)",
            ),
        ),
        DelegateSpec(
            "hexagon",
            "Qualcomm Hexagon DSP delegate (older Snapdragons; superseded by QNN).",
            "plugin",
            libraries={"android": ("libhexagon_interface.so",)},
            search_paths={"android": ANDROID_LIB_DIRS},
            options=(),
            requirements=ModelRequirements(integer_only=True, notes="int8/uint8 models only"),
            benchmark_flag="--use_hexagon=true",
        ),
        DelegateSpec(
            "armnn",
            "Arm NN delegate (Cortex-A NEON via CpuAcc, Mali via GpuAcc, Ethos-N).",
            "plugin",
            libraries={"linux": ("libarmnnDelegate.so", "libarmnnDelegate.so.29"), "android": ("libarmnnDelegate.so",)},
            search_paths={"linux": (*LINUX_LIB_DIRS, "/opt/armnn", "/opt/armnn/lib"), "android": ANDROID_LIB_DIRS},
            options=(
                _opt("backends", "str", "comma-separated, in order of preference: GpuAcc,CpuAcc,CpuRef"),
                _opt(
                    "logging-severity",
                    "choice",
                    "Arm NN log level",
                    choices=("trace", "debug", "info", "warning", "error", "fatal"),
                ),
                _opt("number-of-threads", "int", "CpuAcc threads (0 = Arm NN decides)", minimum=0, maximum=64),
                _opt("enable-fast-math", "bool", "allow faster, less exact convolution algorithms"),
                _opt("reduce-fp32-to-fp16", "bool", "run fp32 graphs in fp16"),
                _opt(
                    "gpu-tuning-level", "int", "0 use a tuning file, 1-3 tune (rapid..exhaustive)", minimum=0, maximum=3
                ),
                _opt("gpu-tuning-file", "str", "file to read/write GPU tuning results"),
                _opt("save-cached-network", "bool", "write the optimized network to cached-network-filepath"),
                _opt("cached-network-filepath", "str", "file for the cached optimized network"),
            ),
            threads_option="number-of-threads",
        ),
        DelegateSpec(
            "vx",
            "VeriSilicon/NXP VX delegate for the i.MX 8M Plus / i.MX 93 NPU (TIM-VX, OpenVX).",
            "plugin",
            libraries={"linux": ("libvx_delegate.so",)},
            search_paths={"linux": ("/usr/lib", "/usr/lib/aarch64-linux-gnu", "/usr/local/lib")},
            options=(
                _opt("allowed_cache_mode", "bool", "cache the compiled NPU graph (warm-up takes seconds otherwise)"),
                _opt("cache_file_path", "str", "file for the compiled-graph cache"),
                _opt("device_id", "int", "NPU device index", minimum=0),
            ),
            requirements=ModelRequirements(integer_only=True, notes="per-tensor int8/uint8 models run best on the NPU"),
        ),
        DelegateSpec(
            "qnn",
            "Qualcomm AI Engine Direct (QNN) delegate: HTP (NPU), GPU or DSP backends.",
            "plugin",
            libraries={"android": ("libQnnTFLiteDelegate.so",), "linux": ("libQnnTFLiteDelegate.so",)},
            search_paths={"android": ANDROID_LIB_DIRS, "linux": ("/usr/lib", "/opt/qcom/aistack/qairt/lib")},
            options=(
                _opt("backend_type", "choice", "QNN backend to run on", choices=("htp", "gpu", "dsp")),
                _opt("library_path", "str", "path of the backend library (libQnnHtp.so ...)"),
                _opt("skel_library_dir", "str", "folder with the Hexagon skel libraries"),
                _opt("log_level", "int", "0 off .. 5 debug", minimum=0, maximum=5),
                _opt(
                    "htp_performance_mode", "int", "0 default, 2 burst, 3 high performance, ...", minimum=0, maximum=8
                ),
                _opt("htp_precision", "int", "0 quantized, 1 fp16", minimum=0, maximum=1),
                _opt("gpu_precision", "int", "0 as in graph, 1 fp32, 2 fp16, 3 hybrid", minimum=0, maximum=3),
                _opt("gpu_performance_mode", "int", "0 default, 1 high, 2 normal, 3 low", minimum=0, maximum=3),
                _opt("dsp_performance_mode", "int", "0 default .. 8 balance", minimum=0, maximum=8),
                _opt("cache_dir", "str", "folder for the compiled-context cache"),
                _opt("model_token", "str", "cache key of this model inside cache_dir"),
            ),
        ),
        DelegateSpec(
            "external",
            "Any library implementing TFLite's external-delegate plugin API (external:/path/lib.so).",
            "plugin",
            strict_options=False,
        ),
    )
}
BUILTIN = (CPU, XNNPACK)


def get_spec(name: str) -> DelegateSpec:
    """The spec for a delegate name; ConfigError with a suggestion when unknown."""
    spec = SPECS.get(name)
    if spec is None:
        names = [n for n in SPECS if n != "external"]
        raise ConfigError(
            f"unknown delegate {name!r}{_did_you_mean(name, names)}",
            f"known delegates: {', '.join(names)}, auto, or external:/path/to/lib.so",
        )
    return spec


def current_platform() -> str:
    """linux | android | darwin | windows (Android reports linux in sys.platform)."""
    if hasattr(sys, "getandroidapilevel") or os.environ.get("ANDROID_ROOT") or os.path.exists("/system/build.prop"):
        return "android"
    if sys.platform.startswith("linux"):
        return "linux"
    if sys.platform == "darwin":
        return "darwin"
    if sys.platform.startswith(("win", "cygwin")):
        return "windows"
    return sys.platform


# --- finding libraries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LibraryLookup:
    """Where a delegate's library was found, or everywhere it was looked for."""

    path: str | None
    searched: tuple[str, ...]

    @property
    def found(self) -> bool:
        return self.path is not None


def find_library(
    spec: DelegateSpec,
    explicit: str | None = None,
    extra_dirs: tuple[str, ...] = (),
    target: str | None = None,
) -> LibraryLookup:
    """Look for the delegate's library: explicit path, then extra dirs, spec dirs, LD_LIBRARY_PATH."""
    if explicit:
        path = Path(explicit).expanduser()
        return LibraryLookup(str(path) if path.is_file() else None, (str(path),))
    names = spec.library_names(target)
    dirs = _unique(
        (*extra_dirs, *_own_arch_first(spec.search_paths.get(target or current_platform(), ())), *_ld_library_path())
    )
    searched = []
    for folder in dirs:
        for name in names:
            candidate = os.path.join(folder, name)
            searched.append(candidate)
            if os.path.isfile(candidate):
                return LibraryLookup(candidate, tuple(searched))
    return LibraryLookup(None, tuple(searched) or names)


def _own_arch_first(dirs: tuple[str, ...]) -> tuple[str, ...]:
    """Put this machine's multiarch folder (e.g. /usr/lib/x86_64-linux-gnu) ahead of the others."""
    arch = platform.machine()
    return tuple(sorted(dirs, key=lambda d: 0 if f"/{arch}-" in d else 1))


def _ld_library_path() -> tuple[str, ...]:
    return tuple(p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p)


def _unique(items: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def profile_library(name: str, profile_delegates: dict[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """(library path, options) a device profile gives for a delegate, if any."""
    entry = (profile_delegates or {}).get(name) or {}
    if not isinstance(entry, dict):
        entry = dict(entry) if hasattr(entry, "items") else {}
    return entry.get("library"), dict(entry.get("options") or {})


# --- loading --------------------------------------------------------------------------------------


def load_delegate_library(choice: DelegateChoice, runtime: Any, profile_delegates: dict[str, Any] | None = None) -> Any:
    """Load the choice's delegate library into a delegate object the Interpreter accepts.

    Raises DelegateError with `outcome` "not_found" or "failed_to_load" in its details.
    """
    spec = get_spec(choice.delegate)
    lookup = locate(choice, profile_delegates)
    if not lookup.found:
        raise DelegateError(
            f"{choice.label}: library not found ({_wanted(spec, choice)})",
            "install the delegate library or give its path in the device profile",
            outcome="not_found",
            searched=list(lookup.searched[:12]),
        )
    options = effective_options(choice, profile_delegates)
    try:
        return LOADERS[spec.loader](runtime, lookup.path, options)
    except (OSError, ValueError, RuntimeError, AttributeError, TypeError) as exc:
        raise DelegateError(
            f"{choice.label}: failed to load {lookup.path}: {_one_line(exc).replace(f'{lookup.path}: ', '')}",
            "the file is not a TFLite delegate for this platform, or its dependencies are missing",
            outcome="failed_to_load",
            library=lookup.path,
        ) from exc


def _wanted(spec: DelegateSpec, choice: DelegateChoice) -> str:
    if choice.library:
        return f"no file at {choice.library}"
    names = spec.library_names()
    if names:
        return ", ".join(names)
    return f"{spec.name} has no library for {current_platform()}; it exists on {', '.join(spec.libraries) or 'none'}"


def locate(choice: DelegateChoice, profile_delegates: dict[str, Any] | None = None) -> LibraryLookup:
    spec = get_spec(choice.delegate)
    profile_path, _ = profile_library(choice.delegate, profile_delegates)
    return find_library(spec, explicit=choice.library or profile_path)


def effective_options(choice: DelegateChoice, profile_delegates: dict[str, Any] | None = None) -> dict[str, str]:
    """Profile options overlaid with the choice's own, validated against the spec."""
    spec = get_spec(choice.delegate)
    _, profile_options = profile_library(choice.delegate, profile_delegates)
    merged = {**profile_options, **choice.options_dict()}
    if spec.threads_option and choice.threads and spec.threads_option not in merged:
        merged[spec.threads_option] = choice.threads
    return spec.validate_options(merged)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


PLUGIN_ENTRY = "tflite_plugin_create_delegate"


def _load_plugin(runtime: Any, path: str, options: dict[str, str]) -> Any:
    """Libraries exporting tflite_plugin_create_delegate (Edge TPU, Arm NN, VX, QNN, external)."""
    # Open it ourselves first: the runtimes' Delegate objects print a traceback from __del__
    # when their own LoadLibrary fails, and "no such symbol" deserves a clearer message.
    library = ctypes.CDLL(path)
    if not hasattr(library, PLUGIN_ENTRY):
        raise ValueError(f"{path} does not export {PLUGIN_ENTRY}; it is not a TFLite external delegate")
    return runtime.load_delegate(path, options)


class GpuV2Delegate:
    """A TfLiteGpuDelegateV2 created through ctypes, shaped like the runtimes' Delegate objects."""

    # TfLiteGpuDelegateOptionsV2 grew over releases: reserve room so a newer library's larger
    # struct returned by value (through a hidden pointer) never writes past our buffer.
    class _Options(ctypes.Structure):
        _fields_ = [
            ("is_precision_loss_allowed", ctypes.c_int32),
            ("inference_preference", ctypes.c_int32),
            ("inference_priority1", ctypes.c_int32),
            ("inference_priority2", ctypes.c_int32),
            ("inference_priority3", ctypes.c_int32),
            ("experimental_flags", ctypes.c_int64),
            ("max_delegated_partitions", ctypes.c_int32),
            ("serialization_dir", ctypes.c_char_p),
            ("model_token", ctypes.c_char_p),
            ("_reserved", ctypes.c_uint8 * 512),
        ]

    # Enum values from tensorflow/lite/delegates/gpu/delegate_options.h.
    PRIORITY = {"fp32": 1, "fp16": 2}  # TFLITE_GPU_INFERENCE_PRIORITY_MAX_PRECISION / _MIN_LATENCY
    PREFERENCE = {"fast_single_answer": 0, "sustained_speed": 1, "balanced": 2}
    FLAGS = {"quantized": 1, "cl": 2, "gl": 4, "serialize": 8}  # TFLITE_GPU_EXPERIMENTAL_FLAGS_*

    def __init__(self, path: str, options: dict[str, str]) -> None:
        self._library = ctypes.CDLL(path)
        defaults = self._library.TfLiteGpuDelegateOptionsV2Default
        defaults.restype = self._Options
        create = self._library.TfLiteGpuDelegateV2Create
        create.argtypes = [ctypes.POINTER(self._Options)]
        create.restype = ctypes.c_void_p
        self._options = defaults()
        self._strings = self._apply(options)
        self._delegate_ptr = create(ctypes.byref(self._options))
        if not self._delegate_ptr:
            raise ValueError("TfLiteGpuDelegateV2Create returned NULL (no usable OpenCL/OpenGL device?)")

    def _apply(self, options: dict[str, str]) -> list[bytes]:
        """Overlay our options on the library's defaults; return the strings ctypes must keep alive."""
        o = self._options
        precision = options.get("precision", "fp16")  # benchmark_model's default too
        o.is_precision_loss_allowed = int(precision == "fp16")
        o.inference_priority1 = self.PRIORITY[precision]
        if "inference_preference" in options:
            o.inference_preference = self.PREFERENCE[options["inference_preference"]]
        flags = o.experimental_flags
        if options.get("quantized") in ("true", "1"):
            flags |= self.FLAGS["quantized"]
        if options.get("backend", "auto") in ("cl", "gl"):
            flags |= self.FLAGS[options["backend"]]
        keep = []
        for key in ("serialization_dir", "model_token"):
            if key in options:
                keep.append(options[key].encode())
                setattr(o, key, keep[-1])
        if len(keep) == 2:
            flags |= self.FLAGS["serialize"]
        o.experimental_flags = flags
        return keep

    def _get_native_delegate_pointer(self) -> int:
        return self._delegate_ptr

    def __del__(self) -> None:
        library = getattr(self, "_library", None)
        if library is not None and getattr(self, "_delegate_ptr", None):
            delete = library.TfLiteGpuDelegateV2Delete
            delete.argtypes = [ctypes.c_void_p]
            delete(self._delegate_ptr)
            self._library = None


def _load_gpu_v2(runtime: Any, path: str, options: dict[str, str]) -> Any:
    return GpuV2Delegate(path, options)


LOADERS = {"plugin": _load_plugin, "gpu_v2": _load_gpu_v2}


# --- what this machine offers ---------------------------------------------------------------------------


def machine_summary(profile_delegates: dict[str, Any] | None = None, target: str | None = None) -> list[dict[str, Any]]:
    """One row per registered delegate: platform support, library found where (for `edgetk delegates`)."""
    rows = []
    plat = target or current_platform()
    for spec in SPECS.values():
        if spec.name == "external":
            continue
        row: dict[str, Any] = {"delegate": spec.name, "loader": spec.loader, "summary": spec.summary}
        if spec.loader == "builtin":
            row.update(status="built in", library=None)
        elif not spec.library_names(plat) and not profile_library(spec.name, profile_delegates)[0]:
            row.update(status=f"not available on {plat}", library=None)
        else:
            explicit, _ = profile_library(spec.name, profile_delegates)
            lookup = find_library(spec, explicit=explicit, target=plat)
            row.update(status="found" if lookup.found else "not found", library=lookup.path)
            row["searched"] = list(lookup.searched[:8])
        rows.append(row)
    return rows


def machine_arch() -> str:
    return platform.machine()
