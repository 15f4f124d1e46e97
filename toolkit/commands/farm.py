"""`edgetk farm run|status|validate|plan FARM.yaml`: a models x variants x devices x delegates matrix."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import click

from toolkit.output import emit_json, json_option, print_table

FARM_FILE = click.Path(exists=True, dir_okay=False)


@click.group("farm")
def farm() -> None:
    """Run a farm file: every device in parallel, one job at a time per device, resumable.

    \b
    edgetk farm validate farm.yaml   check the file (file:line: field: problem)
    edgetk farm plan farm.yaml       the expanded jobs and which are already done
    edgetk farm run farm.yaml        run what is not done yet (again after a crash: resumes)
    edgetk farm status farm.yaml     done / failed / skipped / remaining
    """


def _load(path: str, store: str | None, cache: str | None = None) -> Any:
    from toolkit.farm.config import load_farm

    loaded = load_farm(path)
    if store:
        loaded.config.store = str(Path(store).resolve())
    if cache:
        loaded.config.cache = str(Path(cache).resolve())
    return loaded


def _job_states(loaded: Any) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    from toolkit.farm.plan import expand
    from toolkit.store import open_store

    jobs = expand(loaded)
    if not loaded.store_path.exists():
        return jobs, {}
    with open_store(loaded.store_path) as store:
        return jobs, store.status_by_job(loaded.name)


def _state(row: dict[str, Any] | None) -> str:
    if row is None:
        return "pending"
    if row["status"] == "failed" and row["transient"]:
        return "failed (will retry)"
    return {"ok": "done"}.get(row["status"], row["status"])


@farm.command("validate")
@click.argument("farm_file", type=FARM_FILE)
@json_option
def validate_cmd(farm_file: str, as_json: bool) -> None:
    """Check a farm file and the models it names; print what it would run."""
    from toolkit.farm.plan import expand, model_units, select_devices

    loaded = _load(farm_file, None)
    units = model_units(loaded)
    jobs = expand(loaded, units)
    summary = {
        "farm": loaded.name,
        "valid": True,
        "models": {u.label: list(u.variants) for u in units},
        "devices": [d.name for d in select_devices(loaded)],
        "jobs": len(jobs),
        "executor": loaded.config.executor,
        "store": str(loaded.store_path),
    }
    if as_json:
        emit_json(summary)
        return
    models = ", ".join(
        f"{name} ({'/'.join(v for v in variants if v) or 'tflite'})" for name, variants in summary["models"].items()
    )
    click.echo(
        f"{farm_file}: ok - farm {loaded.name!r}: {len(units)} model(s) [{models}], "
        f"{len(summary['devices'])} device(s), {len(jobs)} job(s), executor {loaded.config.executor}"
    )


@farm.command("plan")
@click.argument("farm_file", type=FARM_FILE)
@click.option("--store", type=click.Path(dir_okay=False), help="Results store (default: from the farm file).")
@json_option
def plan_cmd(farm_file: str, store: str | None, as_json: bool) -> None:
    """List every job of the matrix and whether the store already has it."""
    loaded = _load(farm_file, store)
    jobs, rows = _job_states(loaded)
    listed = [{**job.to_dict(), "state": _state(rows.get(job.job_id))} for job in jobs]
    if as_json:
        emit_json({"farm": loaded.name, "store": str(loaded.store_path), "jobs": listed})
        return
    table = [
        [
            j["job_id"][:12],
            j["model"],
            j["variant"] or "-",
            j["device"],
            job.delegate_label,
            job.threads_label,
            j["state"],
        ]
        for j, job in zip(listed, jobs, strict=True)
    ]
    print_table(
        f"farm {loaded.name}: {len(jobs)} job(s)",
        ["job", "model", "variant", "device", "delegate", "threads", "state"],
        table,
    )
    counts = Counter(j["state"] for j in listed)
    click.echo(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


@farm.command("run")
@click.argument("farm_file", type=FARM_FILE)
@click.option("--store", type=click.Path(dir_okay=False), help="Results store (default: from the farm file).")
@click.option(
    "--cache", type=click.Path(file_okay=False), help="Conversion cache folder (default: from the farm file)."
)
@click.option(
    "--retry-failed", is_flag=True, help="Also re-run jobs that failed deterministically (model rejected, crash)."
)
@json_option
def run_cmd(farm_file: str, store: str | None, cache: str | None, retry_failed: bool, as_json: bool) -> None:
    """Run the jobs not yet done. Re-running the same command resumes after a crash or Ctrl-C.

    \b
    With --json, progress events are printed as one JSON object per line on stdout; the last one
    is {"event": "farm_finished", ...}. Exits 20 if some jobs failed or were skipped.
    """
    from toolkit.farm.executors import make_executor
    from toolkit.farm.progress import JsonLines, LiveProgress
    from toolkit.farm.scheduler import run_farm
    from toolkit.store import open_store

    loaded = _load(farm_file, store, cache)
    sink = JsonLines() if as_json else LiveProgress()
    with open_store(loaded.store_path) as results, sink:
        summary = run_farm(loaded, results, make_executor(loaded.config), sink, retry_failed)
    _finish(loaded, summary, as_json)


def _finish(loaded: Any, summary: Any, as_json: bool) -> None:
    from toolkit.errors import FarmIncompleteError

    counts = summary.counts()
    jobs, rows = _job_states(loaded)
    problems = [rows[j.job_id] for j in jobs if j.job_id in rows and rows[j.job_id]["status"] != "ok"]
    if not as_json:
        click.echo(
            f"farm {loaded.name}: {counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped this run "
            f"({summary.already_done} already done) in {summary.wall_s:.1f} s -> {loaded.store_path}",
            err=True,
        )
    if problems:
        kinds = Counter(r["error_kind"] or r["status"] for r in problems)
        kept = sum(1 for r in problems if r["status"] == "failed" and not r["transient"])
        advice = "run the same command again to retry transient failures and skipped jobs" + (
            f"; {kept} deterministic failure(s) are kept until you fix the cause and pass --retry-failed"
            if kept
            else ""
        )
        raise FarmIncompleteError(
            f"farm {loaded.name}: {len(problems)} job(s) not done ({', '.join(f'{n} {k}' for k, n in kinds.most_common())})",
            f"see `edgetk farm status {loaded.path}`; {advice}",
        )


@farm.command("status")
@click.argument("target", type=FARM_FILE)
@click.option("--store", type=click.Path(dir_okay=False), help="Results store (default: from the farm file).")
@json_option
def status_cmd(target: str, store: str | None, as_json: bool) -> None:
    """Done / failed / skipped / remaining per device, and the cause of every failure."""
    loaded = _load(target, store)
    jobs, rows = _job_states(loaded)
    per_device: dict[str, Counter] = defaultdict(Counter)
    failures = []
    for job in jobs:
        row = rows.get(job.job_id)
        state = "remaining" if row is None else {"ok": "done"}.get(row["status"], row["status"])
        per_device[job.device][state] += 1
        if row is not None and row["status"] != "ok":
            failures.append(
                {
                    "job": job.describe(),
                    "status": row["status"],
                    "cause": f"{row['error_kind']}: {row['error_message']}",
                }
            )
    totals = Counter()
    for counter in per_device.values():
        totals.update(counter)
    states = ("done", "failed", "skipped", "remaining")
    if as_json:
        emit_json(
            {
                "farm": loaded.name,
                "store": str(loaded.store_path),
                "totals": {s: totals[s] for s in states},
                "devices": {d: {s: c[s] for s in states} for d, c in per_device.items()},
                "failures": failures,
            }
        )
        return
    print_table(
        f"farm {loaded.name} ({loaded.store_path})",
        ["device", *states],
        [[d, *(c[s] for s in states)] for d, c in sorted(per_device.items())]
        + [["total", *(totals[s] for s in states)]],
    )
    if failures:
        print_table(
            "failed and skipped jobs",
            ["job", "status", "cause"],
            [[f["job"], f["status"], f["cause"]] for f in failures],
        )
