"""`edgetk delegates`: the TFLite runtimes installed here and which delegate libraries are found where."""

from __future__ import annotations

from typing import Any

import click

from toolkit.output import emit_json, json_option, print_table, stdout_console


@click.command("delegates")
@click.option("--profile", "profile_name", help="Describe what a device profile declares instead of this machine.")
@json_option
def delegates(profile_name: str | None, as_json: bool) -> None:
    """Show the TFLite runtimes and delegates this machine (or a device profile) offers."""
    report = profile_report(profile_name) if profile_name else machine_report()
    if as_json:
        emit_json(report)
        return
    show(report)


def machine_report() -> dict[str, Any]:
    """Runtimes importable here, and each delegate's library: found where, or searched where."""
    import os

    from delegates.registry import current_platform, machine_arch, machine_summary
    from delegates.runtime import ENV_VAR, installed_runtimes

    return {
        "target": "this machine",
        "platform": current_platform(),
        "arch": machine_arch(),
        "runtime_override": os.environ.get(ENV_VAR),
        "runtimes": installed_runtimes(),
        "delegates": machine_summary(),
    }


def profile_report(name: str) -> dict[str, Any]:
    """What a profile declares: its runtime, each delegate's library (declared or default) and options."""
    from delegates.registry import SPECS
    from toolkit.device_profiles import load_profile

    profile = load_profile(name)
    platform = "android" if profile.os == "android" else profile.os
    rows = []
    for spec_name, spec in SPECS.items():
        if spec_name == "external":
            continue
        entry = profile.delegates.get(spec_name)
        declared = entry is not None or spec.loader == "builtin"
        library = (entry.library if entry else None) or ", ".join(spec.library_names(platform)) or None
        rows.append(
            {
                "delegate": spec_name,
                "status": "declared" if entry is not None else ("built in" if spec.loader == "builtin" else "-"),
                "library": library if declared and spec.loader != "builtin" else None,
                "options": dict(entry.options) if entry else {},
                "benchmark_flag": spec.benchmark_flag,
                "preferred_rank": profile.preferred_delegates.index(spec_name) + 1
                if spec_name in profile.preferred_delegates
                else None,
            }
        )
    return {
        "target": f"profile {profile.name}",
        "platform": platform,
        "arch": profile.abi,
        "runtimes": [
            {
                "name": profile.runtime or "auto-detect",
                "installed": None,
                "version": None,
                "runner": profile.runner.mode,
            }
        ],
        "delegates": rows,
        "note": "library paths are what the profile declares; they are checked on the device when a run starts",
    }


def show(report: dict[str, Any]) -> None:
    console = stdout_console()
    console.print(f"[bold]{report['target']}[/bold]: {report['platform']} / {report['arch']}")
    runtimes = [
        [r["name"], r.get("version") or "-", _yes_no(r.get("installed")), r.get("error") or r.get("runner") or ""]
        for r in report["runtimes"]
    ]
    print_table(
        "TFLite runtimes (first installed is used)", ["runtime", "version", "installed", "notes"], runtimes, console
    )
    if report.get("runtime_override"):
        console.print(f"EDGETK_RUNTIME={report['runtime_override']} overrides the order")
    rows = [[d["delegate"], d["status"], d.get("library") or "-", _details(d)] for d in report["delegates"]]
    print_table("Delegates", ["delegate", "status", "library", "details"], rows, console)
    if report.get("note"):
        console.print(report["note"])


def _details(row: dict[str, Any]) -> str:
    if row.get("options"):
        return _options(row["options"])
    if row.get("status") == "not found" and row.get("searched"):
        return f"searched {len(row['searched'])} places, e.g. {row['searched'][0]}"
    return row.get("benchmark_flag") or ""


def _yes_no(value: Any) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _options(options: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (options or {}).items())
