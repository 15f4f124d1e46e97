"""Run a farm: convert, then drive every device in parallel, one job at a time per device.

Each device has a controller thread that asks the executor for one attempt at a time, retries
transient faults with backoff, probes the device's health after repeated transient failures and
quarantines it (its remaining jobs are stored as skipped, with the reason) when the probe fails,
and rests between jobs as configured. Every finished job is written to the store at once, in its
own transaction; after Ctrl-C nothing more is written, so the store never holds partial results.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from toolkit.errors import InterruptedByUser
from toolkit.farm.config import DeviceSpec, LoadedFarm
from toolkit.farm.documents import failure_document, skipped_document
from toolkit.farm.executors import Executor
from toolkit.farm.plan import Job, effective_settings, expand, model_units, select_devices
from toolkit.farm.prepare import Artifact, ConversionFailure, prepare_artifacts
from toolkit.store import ResultStore, needs_run

Emit = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class DeviceTally:
    """Per-device counts for progress and the summary."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    busy_s: float = 0.0  # sum of the profile calls' own durations (the device's time)
    quarantined: str | None = None

    @property
    def finished(self) -> int:
        return self.ok + self.failed + self.skipped


@dataclasses.dataclass
class RunSummary:
    farm: str
    store: str
    planned: int
    already_done: int
    ran: int
    devices: dict[str, DeviceTally]
    wall_s: float
    interrupted: bool = False

    def counts(self) -> dict[str, int]:
        return {
            "ok": sum(t.ok for t in self.devices.values()),
            "failed": sum(t.failed for t in self.devices.values()),
            "skipped": sum(t.skipped for t in self.devices.values()),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "counts": self.counts()}


def device_dict(device: DeviceSpec) -> dict[str, Any]:
    """A device as the jobs see it (plain data: it may travel to a Dask worker)."""
    options = device.transport.model_dump(mode="json") if device.transport is not None else None
    return {"name": device.name, "uri": device.uri, "profile": device.profile, "transport": options}


class FarmRun:
    """One `edgetk farm run`: plan, convert, dispatch, store."""

    def __init__(
        self,
        farm: LoadedFarm,
        store: ResultStore,
        executor: Executor,
        emit: Emit = lambda event: None,
        retry_failed: bool = False,
    ) -> None:
        self.farm = farm
        self.config = farm.config
        self.store = store
        self.executor = executor
        self._emit = emit
        self.retry_failed = retry_failed
        self.stop = threading.Event()
        self._write_lock = threading.Lock()
        self._accepting = True
        self.tallies: dict[str, DeviceTally] = defaultdict(DeviceTally)
        self.started = time.monotonic()
        self.timeout_s = self._job_timeout()

    def _job_timeout(self) -> float:
        from toolkit.profile import default_timeout
        from toolkit.results import BenchmarkSettings

        if self.config.timeout_s:
            return float(self.config.timeout_s)
        return default_timeout(BenchmarkSettings.model_validate(effective_settings(self.farm)))

    def emit(self, event: dict[str, Any]) -> None:
        self._emit({**event, "t": round(time.monotonic() - self.started, 3)})

    # --- the run --------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        units = model_units(self.farm)
        jobs = expand(self.farm, units)
        self.store.plan(self.farm.name, [j.to_dict() for j in jobs])
        rows = self.store.status_by_job(self.farm.name)
        pending = [j for j in jobs if needs_run(rows.get(j.job_id), self.retry_failed)]
        by_device: dict[str, list[Job]] = defaultdict(list)
        for job in pending:
            by_device[job.device].append(job)
        for name, device_jobs in by_device.items():
            self.tallies[name].total = len(device_jobs)
        self.emit(
            {
                "event": "farm_started",
                "farm": self.farm.name,
                "store": str(self.store.path),
                "planned": len(jobs),
                "pending": len(pending),
                "devices": {name: len(js) for name, js in by_device.items()},
            }
        )
        artifacts, failures = prepare_artifacts(
            units, {(j.model, j.variant) for j in pending}, self.farm.cache_dir, self.emit
        )
        self._dispatch(by_device, artifacts, failures)
        summary = RunSummary(
            farm=self.farm.name,
            store=str(self.store.path),
            planned=len(jobs),
            already_done=len(jobs) - len(pending),
            ran=len(pending),
            devices=dict(self.tallies),
            wall_s=round(time.monotonic() - self.started, 3),
        )
        self.emit({"event": "farm_finished", **summary.to_dict()})
        return summary

    def _dispatch(
        self, by_device: dict[str, list[Job]], artifacts: dict[Any, Artifact], failures: list[ConversionFailure]
    ) -> None:
        devices = {d.name: d for d in select_devices(self.farm)}
        failed_conversions = {(f.model, f.variant): f for f in failures}
        try:
            unavailable = self.executor.start(sorted(by_device))
            threads = [
                threading.Thread(
                    target=self._drive_device,
                    args=(devices[name], jobs, artifacts, failed_conversions, unavailable.get(name)),
                    name=f"farm-{name}",
                    daemon=True,  # an interrupted run abandons running jobs instead of waiting for them
                )
                for name, jobs in by_device.items()
            ]
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(timeout=0.2)
        except KeyboardInterrupt:
            self._interrupt()
        finally:
            self.executor.close()

    def _interrupt(self) -> None:
        with self._write_lock:
            self._accepting = False  # results still in flight are abandoned, never half-stored
        self.stop.set()
        done = sum(t.finished for t in self.tallies.values())
        remaining = sum(t.total for t in self.tallies.values()) - done
        self.emit({"event": "farm_interrupted", "finished": done, "remaining": remaining})
        raise InterruptedByUser(
            f"farm {self.farm.name} interrupted: {done} job(s) stored this run, {remaining} not run",
            f"resume with: edgetk farm run {self.farm.path}  (finished jobs are kept and not run again)",
        )

    # --- one device -------------------------------------------------------------------------------

    def _drive_device(
        self,
        device: DeviceSpec,
        jobs: list[Job],
        artifacts: dict[Any, Artifact],
        failed_conversions: dict[Any, ConversionFailure],
        unavailable: str | None,
    ) -> None:
        if unavailable:
            self._skip_rest(device, jobs, artifacts, unavailable)
            return
        consecutive = 0
        try:
            for index, job in enumerate(jobs):
                if self.stop.is_set():
                    return
                if index and self.config.cooldown.seconds and self.stop.wait(self.config.cooldown.seconds):
                    return
                transient = self._run_job(device, job, artifacts, failed_conversions)
                consecutive = consecutive + 1 if transient else 0
                if consecutive >= self.config.health.max_consecutive_failures:
                    reason = self._health_problem(device, consecutive)
                    if reason:
                        self._quarantine(device, jobs[index + 1 :], artifacts, reason)
                        return
                    consecutive = 0
        finally:
            if not self.stop.is_set():
                self.executor.release(device.name)

    def _run_job(
        self,
        device: DeviceSpec,
        job: Job,
        artifacts: dict[Any, Artifact],
        failed_conversions: dict[Any, ConversionFailure],
    ) -> bool:
        """Run one job to its end (with retries); store it; return whether it failed transiently."""
        artifact = artifacts.get((job.model, job.variant))
        if artifact is None:
            failure = failed_conversions.get((job.model, job.variant))
            error = (
                failure.error.to_dict() if failure else {"kind": "error", "type": "ToolkitError", "message": "no model"}
            )
            self._store_failure(device, job, None, error, attempts=0)
            return False
        outcome, attempts = self._attempts(device, job, artifact)
        if "document" in outcome:
            self._store_ok(device, job, outcome["document"], attempts, outcome.get("worker"))
            return False
        self._store_failure(device, job, artifact, outcome["error"], attempts)
        return bool(outcome["error"].get("transient"))

    def _attempts(self, device: DeviceSpec, job: Job, artifact: Artifact) -> tuple[dict[str, Any], int]:
        retries = self.config.retries
        outcome: dict[str, Any] = {}
        for attempt in range(1, retries.attempts + 1):
            payload = {
                "job": job.to_dict(),
                "device": device_dict(device),
                "model": artifact.model_section() | {"size": artifact.size},
                "timeout_s": self.timeout_s,
                "attempt": attempt,
                "fresh_transport": attempt > 1,
            }
            self.emit(
                {
                    "event": "job_started",
                    "job_id": job.job_id,
                    "device": device.name,
                    "job": job.describe(),
                    "attempt": attempt,
                }
            )
            outcome = self.executor.attempt(payload, self.timeout_s)
            error = outcome.get("error")
            if error is None or not error.get("transient") or attempt == retries.attempts or self.stop.is_set():
                return outcome, attempt
            delay = retries.delay(attempt)
            self.store.record_attempt(job.job_id, attempt, error)
            self.emit(
                {
                    "event": "job_retry",
                    "job_id": job.job_id,
                    "device": device.name,
                    "attempt": attempt,
                    "delay_s": delay,
                    "error": _brief(error),
                }
            )
            if self.stop.wait(delay):
                return outcome, attempt
        return outcome, retries.attempts

    def _health_problem(self, device: DeviceSpec, consecutive: int) -> str | None:
        """None if the device answers a probe; else why it is quarantined."""
        probe = self.executor.probe(device_dict(device), self.config.health.probe_timeout_s)
        self.emit(
            {
                "event": "health_probe",
                "device": device.name,
                "ok": "error" not in probe,
                "error": _brief(probe.get("error")),
            }
        )
        if "error" not in probe:
            return None
        return f"device {device.name} quarantined after {consecutive} jobs failed in a row; health probe: {_brief(probe['error'])}"

    def _quarantine(self, device: DeviceSpec, rest: list[Job], artifacts: dict[Any, Artifact], reason: str) -> None:
        self.tallies[device.name].quarantined = reason
        self.emit({"event": "device_quarantined", "device": device.name, "reason": reason, "skipped": len(rest)})
        self.executor.release(device.name)
        self._skip_rest(device, rest, artifacts, reason)

    def _skip_rest(self, device: DeviceSpec, jobs: list[Job], artifacts: dict[Any, Artifact], reason: str) -> None:
        for job in jobs:
            model = _model_section(artifacts.get((job.model, job.variant)), job)
            document = skipped_document(job.to_dict(), device_dict(device), model, reason)
            if self._write(document, "skipped", 0):
                self.tallies[device.name].skipped += 1
                self.emit(
                    {
                        "event": "job_finished",
                        "job_id": job.job_id,
                        "device": device.name,
                        "job": job.describe(),
                        "status": "skipped",
                        "error": reason,
                    }
                )

    # --- storing ----------------------------------------------------------------------------------

    def _write(self, document: dict[str, Any], status: str, attempts: int) -> bool:
        with self._write_lock:
            if not self._accepting:
                return False
            self.store.put(document, status=status, attempts=attempts)
            return True

    def _store_ok(
        self, device: DeviceSpec, job: Job, document: dict[str, Any], attempts: int, worker: str | None
    ) -> None:
        if not self._write(document, "ok", attempts):
            return
        tally = self.tallies[device.name]
        tally.ok += 1
        tally.busy_s += float(document.get("duration_s") or 0.0)
        self.emit(
            {
                "event": "job_finished",
                "job_id": job.job_id,
                "device": device.name,
                "job": job.describe(),
                "status": "ok",
                "attempts": attempts,
                "p50_ms": document["timings"].get("p50"),
                "delegate": document["config"].get("delegate"),
                "duration_s": document.get("duration_s"),
                **({"worker": worker} if worker else {}),
            }
        )

    def _store_failure(
        self, device: DeviceSpec, job: Job, artifact: Artifact | None, error: dict[str, Any], attempts: int
    ) -> None:
        document = failure_document(
            job.to_dict(), device_dict(device), _model_section(artifact, job), error, max(attempts, 1)
        )
        if not self._write(document, "failed", attempts):
            return
        self.tallies[device.name].failed += 1
        self.emit(
            {
                "event": "job_finished",
                "job_id": job.job_id,
                "device": device.name,
                "job": job.describe(),
                "status": "failed",
                "attempts": attempts,
                "transient": bool(error.get("transient")),
                "error": _brief(error),
            }
        )


def _model_section(artifact: Artifact | None, job: Job) -> dict[str, Any]:
    if artifact is not None:
        return artifact.model_section()
    return {"path": job.model, "name": job.model, "sha256": job.model_identity, "size_bytes": 0, "variant": job.variant}


def _brief(error: dict[str, Any] | None) -> str | None:
    if not error:
        return None
    return f"{error.get('kind', 'error')}: {error.get('message', '')}"


def run_farm(
    farm: LoadedFarm, store: ResultStore, executor: Executor, emit: Emit, retry_failed: bool = False
) -> RunSummary:
    """Run (or resume) a farm; raises InterruptedByUser on Ctrl-C after saying how to resume."""
    run = FarmRun(farm, store, executor, emit, retry_failed)
    try:
        return run.run()
    except KeyboardInterrupt:  # during planning or conversion; dispatch handles its own
        run._interrupt()
        raise
