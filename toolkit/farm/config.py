"""The farm file: which models, which devices, which matrix, and how to run it.

Validated strictly (unknown keys are errors with a did-you-mean) through `toolkit.yamlconfig`, so
every problem is reported as `farm.yaml:LINE: dotted.field: problem`. Defaults make a short file
useful: `models: [examples/digits/digits.onnx]` profiles fp32 and int8 on the `local` device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from toolkit.results import BenchmarkSettings
from toolkit.transports.options import TransportOptions

SOURCE_VARIANTS = ("fp32", "fp16", "dynamic", "int8", "int8-full", "int16x8")
DEFAULT_VARIANTS = ("fp32", "int8")
QUANTIZED_NEEDING_CALIBRATION = frozenset({"int8", "int8-full", "int16x8"})
TAG_PREFIX = "tag:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    """One model: a source to convert (onnx, keras, savedmodel) or a ready .tflite file."""

    path: str
    name: str | None = None  # label in reports; defaults to the file stem
    variants: list[str] | None = None  # source models only; default fp32 + int8 (int8 needs calibration)
    calibration: str | None = None  # .npy/.npz/image folder for int8 variants
    evaluation: str | None = None  # held-out labelled data for the converter's accuracy report
    synthetic_calibration: bool = False  # allow random calibration data (the report says so)
    convert_options: dict[str, Any] = Field(default_factory=dict)  # extra keyword arguments for convert_model

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, value: list[str] | None) -> list[str] | None:
        for variant in value or []:
            if variant not in SOURCE_VARIANTS:
                raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(SOURCE_VARIANTS)}")
        return value

    @property
    def is_tflite(self) -> bool:
        return self.path.lower().endswith(".tflite")

    @property
    def label(self) -> str:
        return self.name or Path(self.path).stem


class DeviceSpec(_Strict):
    """A device: an address, the profile describing its class, tags to select it by, and transport options."""

    name: str
    uri: str = "local"
    profile: str | None = None
    tags: list[str] = Field(default_factory=list)
    transport: TransportOptions | None = None  # `type` may be left out: it follows from the URI
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _transport_type_from_uri(cls, data: Any) -> Any:
        options = data.get("transport") if isinstance(data, dict) else None
        if isinstance(options, dict) and "type" not in options:
            data = {**data, "transport": {**options, "type": _uri_kind(str(data.get("uri", "local")))}}
        return data

    @field_validator("uri")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        _uri_kind(value)
        return value

    @model_validator(mode="after")
    def _transport_matches_uri(self) -> DeviceSpec:
        if self.transport is not None and self.transport.type != _uri_kind(self.uri):
            raise ValueError(f"transport type {self.transport.type!r} does not match the URI {self.uri!r}")
        return self

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not value or value.startswith(TAG_PREFIX) or any(c.isspace() for c in value):
            raise ValueError(f"device name {value!r} must be non-empty, without spaces, not starting with 'tag:'")
        return value


class MatrixSpec(_Strict):
    """The cells to run: variants x devices (names or `tag:NAME`) x delegate requests x thread counts."""

    variants: list[str] | None = None  # filter; default: every variant each model produces
    devices: list[str] | None = None  # default: every enabled device
    delegates: list[str | list[str]] = Field(default_factory=lambda: ["default"])
    threads: list[int | None] = Field(default_factory=lambda: [None])  # None: the profile's / runtime's default
    exclude: list[dict[str, Any]] = Field(default_factory=list)  # cells to drop, e.g. {device: pi-1, variant: fp16}

    @field_validator("threads")
    @classmethod
    def _positive_threads(cls, value: list[int | None]) -> list[int | None]:
        for threads in value:
            if threads is not None and threads < 1:
                raise ValueError(f"thread count {threads} must be >= 1 (or null for the default)")
        return value

    @field_validator("exclude")
    @classmethod
    def _known_exclude_keys(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        allowed = {"model", "variant", "device", "delegate", "threads"}
        for rule in value:
            unknown = set(rule) - allowed
            if unknown:
                raise ValueError(f"exclude keys {sorted(unknown)} unknown; allowed: {', '.join(sorted(allowed))}")
        return value


class RetrySpec(_Strict):
    """Retries for transient faults (device lost, unreachable, timeout) with exponential backoff."""

    attempts: int = Field(default=3, ge=1)  # total tries per job, the first included
    backoff_s: float = Field(default=2.0, ge=0)
    factor: float = Field(default=2.0, ge=1)
    max_backoff_s: float = Field(default=60.0, ge=0)

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the given number of failed attempts."""
        return min(self.max_backoff_s, self.backoff_s * self.factor ** max(0, failed_attempts - 1))


class HealthSpec(_Strict):
    """When a device is quarantined: after this many jobs in a row failed transiently and a probe fails."""

    max_consecutive_failures: int = Field(default=2, ge=1)
    probe_timeout_s: float = Field(default=15.0, gt=0)


class CooldownSpec(_Strict):
    """Rest between jobs on one device: a fixed pause, and/or wait on-device until it is cool enough."""

    seconds: float = Field(default=0.0, ge=0)
    below_c: float | None = None  # passed to the profiler: wait until the hottest zone is below this
    max_wait_s: float = Field(default=300.0, ge=0)


class DaskSpec(_Strict):
    """Where the Dask scheduler listens; each `dask worker` declares `--resources "device:NAME=1"`."""

    scheduler: str  # e.g. tcp://10.0.0.2:8786
    connect_timeout_s: float = Field(default=30.0, gt=0)


class FarmConfig(_Strict):
    """The whole farm file."""

    name: str | None = None  # defaults to the file's stem
    models: list[ModelSpec]
    devices: list[DeviceSpec] = Field(default_factory=lambda: [DeviceSpec(name="local", uri="local")])
    matrix: MatrixSpec = Field(default_factory=MatrixSpec)
    settings: BenchmarkSettings = Field(default_factory=BenchmarkSettings)
    timeout_s: float | None = Field(default=None, gt=0)  # per attempt; default: from the settings (2*max_s + 300)
    retries: RetrySpec = Field(default_factory=RetrySpec)
    health: HealthSpec = Field(default_factory=HealthSpec)
    cooldown: CooldownSpec = Field(default_factory=CooldownSpec)
    executor: Literal["inprocess", "dask"] = "inprocess"
    dask: DaskSpec | None = None
    store: str | None = None  # SQLite file; default <farm dir>/<name>.results.db
    cache: str | None = None  # conversion cache; default <farm dir>/.edgetk-cache

    @field_validator("models", mode="before")
    @classmethod
    def _model_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"path": item} if isinstance(item, str) else item for item in value]
        return value

    def problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """Cross-field problems as (location in the file, message): duplicate names, unknown devices."""
        found = _duplicates("devices", [d.name for d in self.devices], "name")
        found += _duplicates("models", [m.label for m in self.models], "path")
        known = {d.name for d in self.devices}
        tags = {t for d in self.devices for t in d.tags}
        for index, entry in enumerate(self.matrix.devices or []):
            message = _device_selector_problem(entry, known, tags)
            if message:
                found.append((("matrix", "devices", index), message))
        if self.executor == "dask" and self.dask is None:
            found.append((("executor",), "`dask` needs a `dask:` section with the scheduler address"))
        return found


def _duplicates(what: str, names: list[str], key: str) -> list[tuple[tuple[Any, ...], str]]:
    seen: set[str] = set()
    found = []
    for index, name in enumerate(names):
        if name in seen:
            found.append(((what, index, key), f"name {name!r} is used twice; give each entry its own `name`"))
        seen.add(name)
    return found


def _device_selector_problem(entry: str, names: set[str], tags: set[str]) -> str | None:
    import difflib

    if entry.startswith(TAG_PREFIX):
        tag = entry[len(TAG_PREFIX) :]
        if tag in tags:
            return None
        close = difflib.get_close_matches(tag, sorted(tags), n=1)
        return f"no device has tag {tag!r}" + (f" (did you mean 'tag:{close[0]}'?)" if close else "")
    if entry in names:
        return None
    close = difflib.get_close_matches(entry, sorted(names), n=1)
    return f"unknown device {entry!r}" + (
        f" (did you mean {close[0]!r}?)" if close else f" (devices: {', '.join(sorted(names))})"
    )


class LoadedFarm:
    """A validated farm file with the paths in it resolved against the file's folder."""

    def __init__(self, config: FarmConfig, path: Path) -> None:
        self.config = config
        self.path = path
        self.base = path.parent

    @property
    def name(self) -> str:
        return self.config.name or self.path.stem

    def resolve(self, value: str) -> Path:
        """A path from the farm file, relative to the file's folder (or absolute, or ~)."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (self.base / candidate)

    @property
    def store_path(self) -> Path:
        return self.resolve(self.config.store) if self.config.store else self.base / f"{self.name}.results.db"

    @property
    def cache_dir(self) -> Path:
        return self.resolve(self.config.cache) if self.config.cache else self.base / ".edgetk-cache"


def load_farm(path: str | Path) -> LoadedFarm:
    """Read and validate a farm file (raises ConfigError naming file, line and field)."""
    from toolkit.errors import ConfigError
    from toolkit.yamlconfig import load_yaml, validate

    path = Path(path)
    data, lines = load_yaml(path)
    config = validate(FarmConfig, data, str(path), lines)
    messages = [f"{path}:{_line(lines, loc)}: {_dotted(loc)}: {text}" for loc, text in config.problems()]
    if messages:
        more = f" (and {len(messages) - 1} more problem(s))" if len(messages) > 1 else ""
        raise ConfigError(
            messages[0] + more, "fix the entry named above; `edgetk farm validate` checks a file", problems=messages
        )
    return LoadedFarm(config, path.resolve())


def _line(lines: dict[Any, int], loc: tuple[Any, ...]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _dotted(loc: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))


def _uri_kind(uri: str) -> str:
    """local | ssh | adb for a device URI (a ValueError, reported with file and line, when unknown)."""
    from toolkit.errors import ConfigError
    from toolkit.transports import transport_kind

    try:
        return transport_kind(uri)
    except ConfigError as error:
        raise ValueError(error.message) from None
