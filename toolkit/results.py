"""The result schema: one versioned JSON document per measurement.

The device runner builds these documents as plain dicts (it cannot import pydantic); the
controller validates them with the models below before storing or reporting, so a schema drift
between runner and controller fails loudly. Bump SCHEMA when a field changes meaning or is
removed; adding an optional field keeps the version. docs/results.md describes every field.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "edgetk.result/1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Strict):
    path: str  # path on the controller as given by the user
    name: str  # file name without directories
    sha256: str
    size_bytes: int
    variant: str | None = None  # fp32, fp16, dynamic, int8, int8-full, int16x8 (from edgetk metadata)
    source_sha256: str | None = None  # hash of the source model it was converted from
    metadata: dict[str, Any] | None = None  # the edgetk metadata embedded by the converter


class RuntimeInfo(_Strict):
    name: str  # ai_edge_litert | tflite_runtime | tensorflow | benchmark_model
    version: str | None = None


class Fingerprint(_Strict):
    hostname: str | None = None
    serial: str | None = None  # adb serial or /proc/device-tree/serial-number
    model: str | None = None  # "Raspberry Pi 5 Model B Rev 1.0", "Pixel 8", CPU model name on PCs
    soc: str | None = None
    os: str | None = None  # "Debian GNU/Linux 12 (bookworm)", "Android 14"
    kernel: str | None = None
    arch: str | None = None  # aarch64, x86_64, arm64-v8a
    cpu_count: int | None = None
    python: str | None = None
    numpy: str | None = None
    runtime: RuntimeInfo | None = None


class DeviceInfo(_Strict):
    name: str  # farm device name, or the URI for ad-hoc runs
    uri: str
    transport: Literal["local", "ssh", "adb"]
    profile: str | None = None
    fingerprint: Fingerprint = Field(default_factory=Fingerprint)


class BenchmarkSettings(_Strict):
    """benchmark_model semantics (STYLE.md #9)."""

    warmup_runs: int = 1
    warmup_min_s: float = 0.5
    num_runs: int = 50
    min_s: float = 1.0
    max_s: float = 150.0
    run_delay_s: float = 0.0
    adaptive: bool = False
    target_ci: float = 0.01  # adaptive: stop when the median's 95% CI half-width / median <= this
    cooldown_below_c: float | None = None  # wait until the hottest zone is under this before measuring
    cooldown_max_s: float = 300.0


class RunConfig(_Strict):
    delegate_request: list[str]  # what the user asked for, e.g. ["gpu", "xnnpack"] or ["auto"]
    delegate: str | None = None  # what was applied in the end ("cpu" when no delegate)
    delegate_options: dict[str, Any] = Field(default_factory=dict)
    threads: int | None = None
    runner: Literal["python", "benchmark_model"] = "python"
    inputs: str = "random"  # "random" or the input file name
    settings: BenchmarkSettings = Field(default_factory=BenchmarkSettings)


class Timings(_Strict):
    """All times in milliseconds."""

    init: float | None = None  # interpreter creation + delegate application + allocate_tensors
    first: float | None = None  # first inference
    warmup_mean: float | None = None
    warmup_runs: int | None = None
    count: int = 0
    p5: float | None = None  # only where the measuring tool reports it (benchmark_model)
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None  # only where the measuring tool reports it (benchmark_model)
    p99: float | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    samples: list[float] = Field(default_factory=list)
    stop_reason: str | None = None  # count | min_seconds | max_seconds | converged
    ci95_rel: float | None = None  # half-width of the median's 95% CI / median


class Memory(_Strict):
    peak_rss_bytes: int | None = None  # VmHWM of the runner process
    baseline_rss_bytes: int | None = None  # RSS after importing the runtime, before loading the model
    delta_bytes: int | None = None  # peak - baseline
    source: str | None = None  # vmhwm | ru_maxrss | benchmark_model


class Delegation(_Strict):
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    partitions: int | None = None
    cpu_ops: list[str] = Field(default_factory=list)  # operators left on the CPU


class Attempt(_Strict):
    delegate: str
    outcome: str  # applied | not_found | failed_to_load | rejected | partial | crashed | inaccurate | slower | skipped
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class Selection(_Strict):
    chosen: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    measurements_ms: dict[str, float] = Field(default_factory=dict)  # auto mode: candidate -> p50


class Parity(_Strict):
    reference: str = "cpu"  # plain CPU interpreter without default delegates
    max_abs_error: float | None = None
    cosine: float | None = None
    outputs: list[dict[str, Any]] = Field(default_factory=list)


class Thermal(_Strict):
    before_c: dict[str, float] = Field(default_factory=dict)  # zone name -> degrees C
    after_c: dict[str, float] = Field(default_factory=dict)
    cpu_khz_before: dict[str, int] = Field(default_factory=dict)  # cpuN -> current frequency
    cpu_khz_after: dict[str, int] = Field(default_factory=dict)
    cpu_khz_limits_before: dict[str, list[int]] = Field(default_factory=dict)  # cpuN -> [scaling_min, scaling_max]
    cpu_khz_limits_after: dict[str, list[int]] = Field(default_factory=dict)
    clocks_changed: bool | None = None
    cooldown_waited_s: float | None = None


class ErrorInfo(_Strict):
    kind: str
    type: str
    message: str
    hint: str = ""
    exit_code: int = 1
    transient: bool = False
    details: dict[str, Any] = Field(default_factory=dict)


class JobInfo(_Strict):
    """Set by the farm: which cell of the matrix this result belongs to."""

    farm: str
    job_id: str  # stable key of the cell, used for resume
    attempt: int = 1
    model: str | None = None
    variant: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class Result(_Strict):
    schema_: str = Field(default=SCHEMA, alias="schema")
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created_at: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())
    status: Literal["ok", "failed"] = "ok"
    error: ErrorInfo | None = None
    model: ModelInfo
    device: DeviceInfo
    config: RunConfig
    timings: Timings = Field(default_factory=Timings)
    memory: Memory = Field(default_factory=Memory)
    delegation: Delegation = Field(default_factory=Delegation)
    selection: Selection = Field(default_factory=Selection)
    parity: Parity | None = None
    thermal: Thermal | None = None
    warnings: list[str] = Field(default_factory=list)
    job: JobInfo | None = None
    duration_s: float | None = None  # wall time of the whole profile call on the controller
    # Wall time of the measuring process on the device, from its start to its result (the runner's
    # own clock; for benchmark_model, the tool's run as timed around it on the device).
    device_time_s: float | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def validate_result(data: dict[str, Any]) -> Result:
    """Validate a result document (raises BadInputError on an unknown schema version)."""
    from toolkit.errors import BadInputError

    version = data.get("schema")
    if version != SCHEMA:
        raise BadInputError(
            f"result has schema {version!r}, this edgetk reads {SCHEMA!r}",
            "re-run the measurement with this edgetk version",
        )
    return Result.model_validate(data)
