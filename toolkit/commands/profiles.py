"""`edgetk profiles list|validate|show`: the device profiles edgetk knows."""

from __future__ import annotations

import click

from toolkit.output import emit_json, json_option, print_table, stdout_console


@click.group("profiles")
def profiles() -> None:
    """List, validate and show device profiles (profiles/*.yaml, $EDGETK_PROFILES)."""


@profiles.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List every profile found, with its OS, ABI, runtime and preferred delegates."""
    from toolkit.device_profiles import list_profiles, load_profile, profile_path

    rows = []
    for name in list_profiles():
        p = load_profile(name)
        rows.append(
            {
                "name": name,
                "path": str(profile_path(name)),
                "os": p.os,
                "abi": p.abi,
                "runtime": p.runtime or ("benchmark_model" if p.runner.mode == "benchmark_model" else "auto"),
                "preferred_delegates": p.preferred_delegates,
                "description": p.description,
            }
        )
    if as_json:
        emit_json(rows)
        return
    table = [[r["name"], r["os"], r["abi"], r["runtime"], ",".join(r["preferred_delegates"])] for r in rows]
    print_table("Device profiles", ["name", "os", "abi", "runtime", "delegate preference"], table, stdout_console())


@profiles.command("validate")
@click.argument("targets", nargs=-1)
def validate_cmd(targets: tuple[str, ...]) -> None:
    """Validate profiles by name or path (default: every profile found); exit 4 on the first bad one."""
    from toolkit.device_profiles import list_profiles, load_profile, profile_path

    for target in targets or tuple(list_profiles()):
        load_profile(target)
        click.echo(f"ok  {profile_path(target)}")


@profiles.command("show")
@click.argument("name")
@json_option
def show_cmd(name: str, as_json: bool) -> None:
    """Show one profile after validation (defaults filled in)."""
    from toolkit.device_profiles import load_profile

    profile = load_profile(name)
    if as_json:
        emit_json(profile.model_dump(mode="json"))
        return
    import yaml

    click.echo(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False), nl=False)
