"""`edgetk run MODEL --delegate ...`: pick a delegate (with fallback), run one inference, say why."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from toolkit.output import emit_json, json_option, print_table, stdout_console


@click.command("run")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--delegate",
    "delegate",
    multiple=True,
    help="Preference order, e.g. gpu,nnapi,xnnpack; `auto` measures and picks the fastest; external:/path/lib.so. "
    "Default: the profile's preference, else xnnpack.",
)
@click.option(
    "--delegate-option",
    "delegate_options",
    multiple=True,
    metavar="[DELEGATE.]KEY=VALUE",
    help="Delegate option (repeatable).",
)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (auto mode: only this count).")
@click.option(
    "--runtime", help="ai_edge_litert, tflite_runtime or tensorflow (default: first installed, or EDGETK_RUNTIME)."
)
@click.option("--profile", "profile_name", help="Device profile for delegate libraries, options and preference.")
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False),
    help=".npy (one input) or .npz (by input name, or arr_0...).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random inputs.")
@json_option
def run(
    model: str,
    delegate: tuple[str, ...],
    delegate_options: tuple[str, ...],
    threads: int | None,
    runtime: str | None,
    profile_name: str | None,
    input_path: str | None,
    seed: int,
    as_json: bool,
) -> None:
    """Run one inference with delegate selection and show what was chosen and why."""
    from delegates import load_interpreter
    from delegates.selection import parse_request

    profile = _profile(profile_name)
    request = parse_request(_join(delegate) or None, profile.preferred_delegates if profile else None)
    options = parse_delegate_options(delegate_options, request)
    runner, report = load_interpreter(
        model,
        request,
        threads=threads,
        delegate_options=options,
        profile_delegates=profile.delegate_settings() if profile else None,
        thread_counts=profile.threads if profile else None,
        runtime=runtime or (profile.runtime if profile else None),
    )
    inputs = load_inputs(input_path, runner) if input_path else runner.random_inputs(seed)
    start = time.perf_counter()
    outputs = runner.invoke(inputs)
    elapsed_ms = (time.perf_counter() - start) * 1000
    document = {
        "model": str(model),
        "runtime": runner.runtime.info(),
        "selection": report.full_dict(),
        "delegation": runner.delegation(),
        "inputs": "random" if not input_path else Path(input_path).name,
        "inference_ms": elapsed_ms,
        "outputs": [summarize_output(name, value) for name, value in outputs.items()],
    }
    if as_json:
        emit_json(document)
        return
    show(document)


def _profile(name: str | None) -> Any:
    if not name:
        return None
    from toolkit.device_profiles import load_profile

    return load_profile(name)


def _join(values: tuple[str, ...]) -> str:
    return ",".join(v for v in values if v.strip())


def parse_delegate_options(values: tuple[str, ...], request: list[str]) -> dict[str, dict[str, str]]:
    """`[DELEGATE.]KEY=VALUE` -> {delegate: {key: value}}; a bare key goes to the requested delegates that take it."""
    from delegates.choice import parse_choice
    from delegates.registry import get_spec
    from toolkit.errors import ConfigError

    out: dict[str, dict[str, str]] = {}
    for value in values:
        key, sep, setting = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--delegate-option {value!r}: expected [DELEGATE.]KEY=VALUE",
                "e.g. --delegate-option gpu.precision=fp16",
            )
        target, dot, option = key.strip().rpartition(".")
        if dot and target in {n for n in request}:
            out.setdefault(target, {})[option] = setting.strip()
            continue
        takers = [n for n in request if n != "auto" and _takes(get_spec(parse_choice(n).delegate), key.strip())]
        if not takers:
            raise ConfigError(
                f"--delegate-option {key.strip()!r}: none of the requested delegates ({', '.join(request)}) takes it",
                "name the delegate: --delegate-option gpu.precision=fp16 (see docs/delegates.md for each option)",
            )
        for name in takers:
            out.setdefault(name, {})[key.strip()] = setting.strip()
    return out


def _takes(spec: Any, key: str) -> bool:
    return not spec.strict_options or spec.option(key) is not None


def load_inputs(path: str, runner: Any) -> dict[str, Any]:
    """Inputs from .npy (single-input models) or .npz (keys: source names, TFLite names or arr_N)."""
    import numpy as np

    from toolkit.errors import BadInputError

    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInputError(
            f"{path}: cannot read as .npy/.npz: {exc}", "save inputs with numpy.save / numpy.savez"
        ) from exc
    if isinstance(data, np.ndarray):
        if len(runner.inputs) != 1:
            raise BadInputError(
                f"{path}: one array for a model with {len(runner.inputs)} inputs",
                "use an .npz with one array per input",
            )
        return {runner.inputs[0].source_name: data}
    arrays = {key: data[key] for key in data.files}
    positional = [arrays.get(f"arr_{i}") for i in range(len(runner.inputs))]
    if all(a is not None for a in positional) and not any(s.source_name in arrays for s in runner.inputs):
        return {spec.source_name: a for spec, a in zip(runner.inputs, positional)}  # noqa: B905
    return arrays


def summarize_output(name: str, value: Any) -> dict[str, Any]:
    import numpy as np

    array = np.asarray(value)
    summary: dict[str, Any] = {
        "name": name,
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "min": float(array.min()) if array.size else None,
        "max": float(array.max()) if array.size else None,
        "mean": float(array.mean()) if array.size else None,
    }
    if array.ndim == 2 and array.shape[0] == 1 and 1 < array.shape[1] <= 100_000:
        top = np.argsort(array[0])[::-1][:5]
        summary["top5"] = [[int(i), float(array[0, i])] for i in top]
    return summary


def show(document: dict[str, Any]) -> None:
    console = stdout_console()
    selection = document["selection"]
    rows = [[a["details"].get("key", a["delegate"]), a["outcome"], a["reason"]] for a in selection["attempts"]]
    print_table("Delegate selection", ["candidate", "outcome", "reason"], rows, console)
    if selection["measurements_ms"]:
        figures = sorted(selection["measurements_ms"].items(), key=lambda kv: kv[1])
        print_table("auto: measured p50", ["configuration", "p50 ms"], [[k, v] for k, v in figures], console)
    choice, delegation = selection["choice"], document["delegation"]
    console.print(
        f"chosen: [bold]{selection['chosen']}[/bold] (threads {choice.get('threads') or 'default'}) on "
        f"{document['runtime']['name']} {document['runtime']['version']}: "
        f"{delegation['delegated_nodes']}/{delegation['total_nodes']} nodes delegated, "
        f"{delegation['partitions']} partition(s)"
        + (
            f"; on CPU: {', '.join(delegation['cpu_ops'])}"
            if delegation["cpu_ops"] and delegation["delegated_nodes"]
            else ""
        )
    )
    for warning in selection["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    rows = [[o["name"], o["shape"], o["dtype"], o["min"], o["max"], o["mean"], _top(o)] for o in document["outputs"]]
    print_table(
        f"Outputs ({document['inputs']} inputs, one inference {document['inference_ms']:.2f} ms)",
        ["output", "shape", "dtype", "min", "max", "mean", "top-5 (index: value)"],
        rows,
        console,
    )


def _top(output: dict[str, Any]) -> str:
    return ", ".join(f"{i}: {v:.3g}" for i, v in output.get("top5", [])) or "-"
