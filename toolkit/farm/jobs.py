"""What runs next to a device: one profiling attempt, and the health probe.

Both take plain, picklable dicts and return plain dicts (`{"document": ...}` or `{"error": ...}`),
so the same functions run in a controller thread or on a Dask worker. Errors travel as
`error.to_dict()` and come back with `error_from_dict`, keeping their class and `transient` flag.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.farm.documents import error_dict, job_info

# The `true` command is the cheapest proof that the device answers and can start processes.
PROBE_ARGV = ["true"]


class TransportPool:
    """One open transport per device, reused across its jobs; reopened after a transient failure."""

    def __init__(self) -> None:
        self._open: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, device: dict[str, Any], fresh: bool = False) -> Any:
        from toolkit.transports import open_transport

        name = device["name"]
        with self._lock:
            current = self._open.pop(name, None)
        if current is not None and not fresh:
            with self._lock:
                self._open[name] = current
            return current
        if current is not None:
            _close_quietly(current)
        transport = open_transport(device["uri"], device.get("transport"))
        with self._lock:
            self._open[name] = transport
        return transport

    def discard(self, name: str) -> None:
        with self._lock:
            transport = self._open.pop(name, None)
        if transport is not None:
            _close_quietly(transport)

    def close_all(self) -> None:
        for name in list(self._open):
            self.discard(name)


def _close_quietly(transport: Any) -> None:
    try:
        transport.close()
    except Exception:  # closing a dead connection may fail; nothing is left to clean up
        pass


def build_request(payload: dict[str, Any], model_path: str) -> Any:
    """The ProfileRequest for one job."""
    from toolkit.profile import ProfileRequest
    from toolkit.results import BenchmarkSettings

    job, device = payload["job"], payload["device"]
    return ProfileRequest(
        model=model_path,
        device=device["uri"],
        device_name=device["name"],
        profile=device.get("profile"),
        delegates=tuple(job.get("delegates") or ()),
        threads=job.get("threads"),
        settings=BenchmarkSettings.model_validate(job.get("settings") or {}),
        timeout_s=payload.get("timeout_s"),
        job=job_info(job, payload.get("attempt", 1)),
    )


def run_attempt(payload: dict[str, Any], pool: TransportPool, model_bytes: bytes | None = None) -> dict[str, Any]:
    """Profile one job once; never raises for device or model problems (they come back as `error`)."""
    from toolkit.profile import profile_model

    try:
        model_path = local_model_path(payload["model"], model_bytes)
        transport = pool.get(payload["device"], fresh=payload.get("fresh_transport", False))
        document = profile_model(build_request(payload, model_path), transport=transport)
    except Exception as error:  # every failure is recorded against the job, never lost
        return {"error": error_dict(error)}
    document["model"]["path"] = payload["model"]["path"]  # the controller's path, where the conversion report is
    return {"document": document}


def run_probe(device: dict[str, Any], pool: TransportPool, timeout_s: float) -> dict[str, Any]:
    """Open a fresh connection and run `true`: is the device still there?"""
    try:
        transport = pool.get(device, fresh=True)
        transport.run(PROBE_ARGV, timeout=timeout_s, check=True)
    except Exception as error:
        pool.discard(device["name"])
        return {"error": error_dict(error)}
    return {"ok": True}


def local_model_path(model: dict[str, Any], model_bytes: bytes | None) -> str:
    """The model file on this host: the controller's path when it is here, else a copy from the bytes sent."""
    path = Path(model["path"])
    if path.is_file() and path.stat().st_size == model["size"]:
        return str(path)
    if model_bytes is None:
        raise ToolkitError(
            f"{path}: model not found on this worker", "put the models on a shared folder or let the farm ship them"
        )
    cache = Path(os.environ.get("EDGETK_WORKER_CACHE", Path.home() / ".cache" / "edgetk" / "farm-models"))
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{model['sha256']}.tflite"
    if not target.exists():
        if hashlib.sha256(model_bytes).hexdigest() != model["sha256"]:
            raise ToolkitError(f"{path.name}: the model bytes received do not match their hash")
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(model_bytes)
        temporary.replace(target)
    return str(target)


# Dask workers keep one pool per process, so a device's transport survives between its jobs.
_WORKER_POOL = TransportPool()


def dask_attempt(payload: dict[str, Any], model_bytes: bytes | None = None) -> dict[str, Any]:
    """Entry point of a farm job on a Dask worker; the result names the worker that ran it."""
    from distributed import get_worker

    outcome = run_attempt(payload, _WORKER_POOL, model_bytes)
    outcome["worker"] = get_worker().address
    if "document" in outcome and outcome["document"].get("job"):
        outcome["document"]["job"]["tags"]["worker"] = outcome["worker"]
    return outcome


def dask_probe(device: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Entry point of a health probe on a Dask worker."""
    return run_probe(device, _WORKER_POOL, timeout_s)


def dask_close(name: str) -> bool:
    _WORKER_POOL.discard(name)
    return True
