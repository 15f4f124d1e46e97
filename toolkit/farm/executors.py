"""Where attempts run: in this process (one thread per device) or on a Dask distributed cluster.

The scheduler drives each device from its own controller thread and asks the executor to run one
attempt (or one health probe) at a time, so retries, quarantine, cooldown and the store stay on the
controller whatever the executor. With Dask, every attempt is submitted with
`resources={"device:NAME": 1}`: only the worker that declared that device runs it, one at a time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

from toolkit.errors import CommandTimeoutError, ConfigError, MissingDependencyError, UnreachableError
from toolkit.farm.jobs import TransportPool, run_attempt, run_probe

# How much longer than the job's own timeout the controller waits for a Dask result.
DASK_RESULT_GRACE_S = 60.0


class Executor(Protocol):
    def start(self, devices: list[str]) -> dict[str, str]:
        """Prepare; return {device: reason} for devices this executor cannot reach."""

    def attempt(self, payload: dict[str, Any], timeout_s: float | None) -> dict[str, Any]: ...

    def probe(self, device: dict[str, Any], timeout_s: float) -> dict[str, Any]: ...

    def release(self, name: str) -> None: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Attempts run in the calling (per-device) thread; transports are pooled per device."""

    def __init__(self) -> None:
        self.pool = TransportPool()

    def start(self, devices: list[str]) -> dict[str, str]:
        _build_runner_once()
        return {}

    def attempt(self, payload: dict[str, Any], timeout_s: float | None) -> dict[str, Any]:
        return run_attempt(payload, self.pool)

    def probe(self, device: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        return run_probe(device, self.pool, timeout_s)

    def release(self, name: str) -> None:
        self.pool.discard(name)

    def close(self) -> None:
        self.pool.close_all()


def _build_runner_once() -> None:
    """Build runner.pyz before the device threads start: each of them would otherwise build it at
    once on its first job (the cache fills when the first build ends) — with 8 devices on a 2-core
    controller, ~1 s before every device's first command."""
    from toolkit.errors import ToolkitError
    from toolkit.runner.pack import build_runner

    try:
        build_runner()
    except (ToolkitError, OSError):
        pass  # every job that needs the runner reports this with its own context


def device_resource(name: str) -> str:
    """The Dask worker resource that stands for one device."""
    return f"device:{name}"


@dataclasses.dataclass
class DaskExecutor:
    """Attempts run on the Dask worker that declared the device (`dask worker --resources "device:NAME=1"`)."""

    scheduler: str
    connect_timeout_s: float = 30.0
    client: Any = None
    _model_futures: dict[str, Any] = dataclasses.field(default_factory=dict)

    def start(self, devices: list[str]) -> dict[str, str]:
        try:
            from distributed import Client
        except ImportError as exc:
            raise MissingDependencyError("executor: dask needs dask.distributed", "pip install 'edgetk[farm]'") from exc
        try:
            self.client = Client(self.scheduler, timeout=self.connect_timeout_s, set_as_default=False)
        except OSError as exc:
            raise UnreachableError(
                f"cannot reach the Dask scheduler at {self.scheduler} ({exc})",
                "start `dask scheduler` there, or fix `dask.scheduler`",
            ) from exc
        declared = self.declared_devices()
        return {
            name: f'no Dask worker declares the resource {device_resource(name)!r} (start one with --resources "{device_resource(name)}=1")'
            for name in devices
            if name not in declared
        }

    def declared_devices(self) -> set[str]:
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {}) if self.client else {}
        names = set()
        for info in workers.values():
            for resource in info.get("resources") or {}:
                if resource.startswith("device:"):
                    names.add(resource[len("device:") :])
        return names

    def _model_future(self, model: dict[str, Any]) -> Any:
        """Ship each model's bytes to the cluster once; workers without the controller's files use them."""
        sha = model["sha256"]
        if sha not in self._model_futures:
            data = Path(model["path"]).read_bytes()
            self._model_futures[sha] = self.client.scatter(data, hash=False)
        return self._model_futures[sha]

    def _submit(self, function: Any, name: str, *args: Any, timeout_s: float | None) -> dict[str, Any]:
        from toolkit.farm.documents import error_dict

        future = self.client.submit(function, *args, resources={device_resource(name): 1}, pure=False)
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            future.cancel()
            return {
                "error": error_dict(
                    CommandTimeoutError(f"no answer from the Dask worker of {name} within {timeout_s:.0f} s")
                )
            }
        except Exception as error:  # a worker that died mid-task, a lost connection to the scheduler
            return {
                "error": error_dict(UnreachableError(f"Dask task for {name} failed: {type(error).__name__}: {error}"))
            }

    def attempt(self, payload: dict[str, Any], timeout_s: float | None) -> dict[str, Any]:
        from toolkit.farm.jobs import dask_attempt

        wait = None if timeout_s is None else timeout_s + DASK_RESULT_GRACE_S
        model = self._model_future(payload["model"])
        return self._submit(dask_attempt, payload["device"]["name"], payload, model, timeout_s=wait)

    def probe(self, device: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        from toolkit.farm.jobs import dask_probe

        return self._submit(dask_probe, device["name"], device, timeout_s, timeout_s=timeout_s + DASK_RESULT_GRACE_S)

    def release(self, name: str) -> None:
        from toolkit.farm.jobs import dask_close

        if self.client is not None and name in self.declared_devices():
            self._submit(dask_close, name, name, timeout_s=30)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def make_executor(config: Any) -> Executor:
    """The executor a farm file asks for."""
    factories = {
        "inprocess": lambda: InProcessExecutor(),
        "dask": lambda: DaskExecutor(config.dask.scheduler, config.dask.connect_timeout_s),
    }
    if config.executor not in factories:
        raise ConfigError(f"unknown executor {config.executor!r}", f"use one of {', '.join(factories)}")
    return factories[config.executor]()
