"""Result documents the farm writes itself: failures and skips carry the cause in the same schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.errors import ToolkitError
from toolkit.results import SCHEMA, JobInfo, Result
from toolkit.transports import transport_kind

SKIPPED_KIND = "skipped"  # error.kind of a job that never ran (its device was quarantined, etc.)


def job_info(job: dict[str, Any], attempt: int) -> dict[str, Any]:
    """The `job` section of a result: which matrix cell it is, for resume and reports."""
    return JobInfo(
        farm=job["farm"],
        job_id=job["job_id"],
        attempt=attempt,
        model=job["model"],
        variant=job.get("variant"),
        tags={
            "device": job["device"],
            "delegate": _delegate_label(job),
            "threads": str(job.get("threads") or "default"),
        },
    ).model_dump(mode="json")


def _delegate_label(job: dict[str, Any]) -> str:
    return ",".join(job.get("delegates") or []) or "default"


def model_section(path: str | Path, sha256: str, size_bytes: int, variant: str | None) -> dict[str, Any]:
    return {"path": str(path), "name": Path(path).name, "sha256": sha256, "size_bytes": size_bytes, "variant": variant}


def failure_document(
    job: dict[str, Any],
    device: dict[str, Any],
    model: dict[str, Any],
    error: dict[str, Any],
    attempt: int,
    duration_s: float | None = None,
) -> dict[str, Any]:
    """A `status: failed` result for a job, built on the controller (the device returned nothing)."""
    document = {
        "schema": SCHEMA,
        "status": "failed",
        "error": {
            k: error[k] for k in ("kind", "type", "message", "hint", "exit_code", "transient", "details") if k in error
        },
        "model": model,
        "device": {
            "name": device["name"],
            "uri": device["uri"],
            "transport": transport_kind(device["uri"]),
            "profile": device.get("profile"),
        },
        "config": {
            "delegate_request": list(job.get("delegates") or []),
            "threads": job.get("threads"),
            "settings": job.get("settings") or {},
        },
        "job": job_info(job, attempt),
        "duration_s": duration_s,
    }
    return Result.model_validate(document).to_dict()


def skipped_document(job: dict[str, Any], device: dict[str, Any], model: dict[str, Any], reason: str) -> dict[str, Any]:
    """A job that was never run, with the reason (stored so reports and `farm status` show it)."""
    error = {
        "kind": SKIPPED_KIND,
        "type": "Skipped",
        "message": reason,
        "hint": "fix the device, then run the same `edgetk farm run` again: skipped jobs are retried",
        "exit_code": 20,
        "transient": True,
    }
    return failure_document(job, device, model, error, attempt=0)


def error_dict(error: BaseException) -> dict[str, Any]:
    """Any exception as a stored error; non-edgetk exceptions are internal errors (not retried)."""
    if isinstance(error, ToolkitError):
        return error.to_dict()
    return ToolkitError(f"{type(error).__name__}: {error}", "this is a bug in edgetk; rerun with --debug").to_dict()
