"""`edgetk profile MODEL --device URI`: benchmark a model where it will run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from toolkit.errors import ToolkitError
from toolkit.output import emit_json, format_bytes, json_option, print_table, stderr_console


def _split_delegates(values: tuple[str, ...]) -> tuple[str, ...]:
    """`--delegate gpu --delegate xnnpack` or `--delegate gpu,xnnpack` -> ("gpu", "xnnpack")."""
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return tuple(out)


def _parse_options(values: tuple[str, ...], delegates: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """`--delegate-option key=value` pairs, for the first delegate asked for."""
    from toolkit.errors import ConfigError

    if not values:
        return {}
    if not delegates or delegates[0] == "auto":
        raise ConfigError(
            "--delegate-option needs a --delegate to apply to", "e.g. --delegate gpu --delegate-option precision=fp16"
        )
    options = {}
    for value in values:
        key, sep, setting = value.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--delegate-option {value!r}: expected KEY=VALUE", "e.g. --delegate-option precision=fp16"
            )
        options[key.strip()] = setting.strip()
    return {delegates[0]: options}


# Which CLI flags become transport options, per transport kind.
TRANSPORT_FLAGS: dict[str, tuple[str, ...]] = {
    "ssh": ("ssh_config", "accept_new_host_key", "workdir"),
    "adb": ("workdir",),
    "local": ("workdir",),
}


def transport_options(device: str, flags: dict[str, Any]) -> dict[str, Any] | None:
    """The transport options the given flags ask for; an error for flags the device kind cannot use."""
    from toolkit.errors import ConfigError
    from toolkit.transports import transport_kind

    kind = transport_kind(device)
    given = {name: value for name, value in flags.items() if value not in (None, False)}
    unusable = sorted(set(given) - set(TRANSPORT_FLAGS[kind]))
    if unusable:
        names = ", ".join("--" + n.replace("_", "-") for n in unusable)
        raise ConfigError(
            f"{names} cannot be used with a {kind} device ({device})", "drop the flag or use an ssh:// device"
        )
    return given or None


def write_result(result: Any, path: str) -> None:
    """Write the result JSON atomically, before anything else can fail."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temp, target)


def _ms(value: float | None) -> str:
    """A latency for people: µs below 0.1 ms (micro-models), ms above."""
    if value is None:
        return "-"
    return f"{value * 1000:.2f} µs" if value < 0.1 else f"{value:.3f} ms"


def _delegate_cell(result: dict[str, Any]) -> str:
    config, delegation = result["config"], result["delegation"]
    text = f"{config.get('delegate') or '-'} (asked: {', '.join(config.get('delegate_request') or [])})"
    done, total = delegation.get("delegated_nodes"), delegation.get("total_nodes")
    if done is not None and total:
        text += (
            f"; {done}/{total} nodes delegated ({100 * done / total:.0f}%), {delegation.get('partitions')} partition(s)"
        )
    if delegation.get("cpu_ops"):
        text += f"; on CPU: {', '.join(delegation['cpu_ops'])}"
    return text


def _runs_cell(timings: dict[str, Any]) -> str:
    text = f"{timings.get('count', 0)} (stopped by {timings.get('stop_reason') or '-'})"
    if timings.get("ci95_rel") is not None:
        text += f", median 95% CI ±{100 * timings['ci95_rel']:.2f}%"
    return text


def _memory_cell(memory: dict[str, Any]) -> str:
    if memory.get("peak_rss_bytes") is None:
        return "-"
    text = format_bytes(memory["peak_rss_bytes"])
    if memory.get("delta_bytes") is not None:
        text += f" (+{format_bytes(memory['delta_bytes'])} over baseline)"
    return text + f", via {memory.get('source')}"


def _parity_cell(parity: dict[str, Any] | None) -> str:
    if not parity or parity.get("max_abs_error") is None:
        return "-"
    return f"max |Δ| {parity['max_abs_error']:.3g}, cosine {parity['cosine']:.6f} vs CPU reference"


def _thermal_cell(thermal: dict[str, Any] | None) -> str:
    if not thermal:
        return "not readable on this device"
    before, after = thermal.get("before_c") or {}, thermal.get("after_c") or {}
    text = ""
    if before:
        hottest = max(before, key=before.get)
        text = f"{hottest} {before[hottest]:.1f} → {after.get(hottest, float('nan')):.1f} °C"
    if thermal.get("clocks_changed") is not None:
        text += "; clocks CHANGED during runs" if thermal["clocks_changed"] else "; clocks steady"
    if thermal.get("cooldown_waited_s"):
        text += f"; waited {thermal['cooldown_waited_s']:.0f} s to cool down"
    return text.strip("; ") or "-"


def summary_rows(result: dict[str, Any]) -> list[list[str]]:
    """The table a person reads: one row per fact."""
    model, device, config, timings = result["model"], result["device"], result["config"], result["timings"]
    fingerprint = device.get("fingerprint") or {}
    runtime = fingerprint.get("runtime") or {}
    rows = [
        [
            "model",
            f"{model['name']} ({model.get('variant') or 'no edgetk metadata'}, {format_bytes(model['size_bytes'])})",
        ],
        ["device", f"{device['uri']}: {fingerprint.get('model') or '?'}, {fingerprint.get('os') or '?'}"],
        [
            "runtime",
            f"{runtime.get('name', '?')} {runtime.get('version') or ''} ({config.get('runner')} runner)".strip(),
        ],
        ["delegate", _delegate_cell(result)],
        ["threads", str(config.get("threads") or "runtime default")],
        ["init", _ms(timings.get("init"))],
        ["first inference", _ms(timings.get("first"))],
        ["warmup mean", f"{_ms(timings.get('warmup_mean'))} over {timings.get('warmup_runs') or 0} run(s)"],
        ["p50 / p90 / p99", " / ".join(_ms(timings.get(k)) for k in ("p50", "p90", "p99"))],
        ["mean ± std", f"{_ms(timings.get('mean'))} ± {_ms(timings.get('std'))}"],
        ["min / max", f"{_ms(timings.get('min'))} / {_ms(timings.get('max'))}"],
        ["runs", _runs_cell(timings)],
        ["peak memory", _memory_cell(result["memory"])],
        ["parity", _parity_cell(result.get("parity"))],
        ["thermal", _thermal_cell(result.get("thermal"))],
    ]
    rows += [["warning", text] for text in result.get("warnings") or []]
    return rows


@click.command("profile")
@click.argument("models", metavar="MODEL...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--device",
    "-d",
    default="local",
    show_default=True,
    help="local, ssh://user@host:port, an ssh alias, adb://SERIAL.",
)
@click.option("--profile", "profile_name", help="Device profile name or YAML file (profiles/*.yaml).")
@click.option(
    "--delegate",
    "delegates",
    multiple=True,
    help="Delegate preference, repeatable or comma-separated (auto, gpu, xnnpack, cpu, external:/lib.so).",
)
@click.option(
    "--delegate-option",
    "delegate_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option for the first --delegate (repeatable).",
)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads for the interpreter.")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True, help="Minimum timed runs.")
@click.option("--warmup", type=click.IntRange(min=1), default=1, show_default=True, help="Minimum warmup runs.")
@click.option(
    "--warmup-secs", type=click.FloatRange(min=0), default=0.5, show_default=True, help="Minimum warmup seconds."
)
@click.option(
    "--min-secs", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Minimum seconds of timed runs."
)
@click.option(
    "--max-secs",
    type=click.FloatRange(min=0, min_open=True),
    default=150.0,
    show_default=True,
    help="Maximum seconds of warmup and of timed runs.",
)
@click.option(
    "--delay", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Seconds to sleep between runs."
)
@click.option("--adaptive", is_flag=True, help="Run until the median's 95% CI is within --target-ci (or --max-secs).")
@click.option(
    "--target-ci",
    type=click.FloatRange(min=0, min_open=True),
    default=0.01,
    show_default=True,
    help="Adaptive mode: relative CI half-width to reach.",
)
@click.option(
    "--cooldown-below",
    type=float,
    metavar="CELSIUS",
    help="Wait until the hottest thermal zone is below this before measuring.",
)
@click.option(
    "--cooldown-max-secs", type=click.FloatRange(min=0), default=300.0, show_default=True, help="Longest cooldown wait."
)
@click.option(
    "--inputs",
    type=click.Path(exists=True, dir_okay=False),
    help=".npy/.npz inputs in the source model's layout (default: random).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for random inputs.")
@click.option("--runtime", help="TFLite runtime on the device: ai_edge_litert, tflite_runtime or tensorflow.")
@click.option(
    "--benchmark-model",
    type=click.Path(exists=True, dir_okay=False),
    help="Use TFLite's benchmark_model binary (built for the device) instead of the Python runner.",
)
@click.option(
    "--runner",
    "runner",
    type=click.Choice(["python", "benchmark_model"]),
    help="Runner on the device (default: benchmark_model with --benchmark-model, else the profile's, else python).",
)
@click.option("--python", "python", help="The device's Python (default: the profile's, else python3).")
@click.option("--ssh-config", type=click.Path(exists=True, dir_okay=False), help="ssh_config file to use (ssh -F).")
@click.option(
    "--accept-new-host-key", is_flag=True, help="Trust an ssh host key seen for the first time (never a changed one)."
)
@click.option("--workdir", help="edgetk's folder on the device (runner and model cache, run folders).")
@click.option("--no-parity", is_flag=True, help="Skip the output comparison with the CPU reference.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    help="Seconds before the measurement is abandoned (default: from --max-secs).",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), help="Also write the result JSON here (written first)."
)
@json_option
def profile(
    models: tuple[str, ...],
    device: str,
    profile_name: str | None,
    delegates: tuple[str, ...],
    delegate_options: tuple[str, ...],
    threads: int | None,
    runs: int,
    warmup: int,
    warmup_secs: float,
    min_secs: float,
    max_secs: float,
    delay: float,
    adaptive: bool,
    target_ci: float,
    cooldown_below: float | None,
    cooldown_max_secs: float,
    inputs: str | None,
    seed: int,
    runtime: str | None,
    benchmark_model: str | None,
    runner: str | None,
    python: str | None,
    ssh_config: str | None,
    accept_new_host_key: bool,
    workdir: str | None,
    no_parity: bool,
    timeout: float | None,
    output: str | None,
    as_json: bool,
) -> None:
    """Benchmark MODEL (.tflite) on a device and print init, latency percentiles, memory, delegation, parity.

    Several models are profiled one after the other on the same device and shown side by side
    (with --json: a list of results).

    \b
    Examples:
      edgetk profile model.int8.tflite                          # this machine
      edgetk profile out/digits.fp32.tflite out/digits.int8.tflite
      edgetk profile model.tflite --device ssh://pi@raspberrypi.local --profile rpi5
      edgetk profile model.tflite --device adb://R58N12ABCDE --benchmark-model ./benchmark_model
    """
    from toolkit.profile import ProfileRequest
    from toolkit.results import BenchmarkSettings

    settings = BenchmarkSettings(
        warmup_runs=warmup,
        warmup_min_s=warmup_secs,
        num_runs=runs,
        min_s=min_secs,
        max_s=max_secs,
        run_delay_s=delay,
        adaptive=adaptive,
        target_ci=target_ci,
        cooldown_below_c=cooldown_below,
        cooldown_max_s=cooldown_max_secs,
    )
    options = transport_options(
        device, {"ssh_config": ssh_config, "accept_new_host_key": accept_new_host_key, "workdir": workdir}
    )
    requests = [
        ProfileRequest(
            model=model,
            device=device,
            profile=profile_name,
            delegates=_split_delegates(delegates),
            delegate_options=_parse_options(delegate_options, _split_delegates(delegates)),
            threads=threads,
            settings=settings,
            inputs=inputs,
            seed=seed,
            runtime=runtime,
            benchmark_model=benchmark_model,
            runner=runner,
            python=python,
            transport_options=options,
            parity=not no_parity,
            timeout_s=timeout,
        )
        for model in models
    ]
    results = run_profiles(requests, output)
    if as_json:
        emit_json(results[0] if len(results) == 1 else results)
        return
    if len(results) == 1:
        print_table(f"{Path(models[0]).name} on {device}", ["", "value"], summary_rows(results[0]))
    else:
        print_table(f"{len(results)} models on {device}", ["", *(Path(m).name for m in models)], side_by_side(results))
    if output:
        stderr_console().print(f"result{'s' if len(results) > 1 else ''} written to {output}")


def run_profiles(requests: list[Any], output: str | None) -> list[dict[str, Any]]:
    """Profile each request on one shared connection; write -o after each (a result is never lost)."""
    from toolkit.profile import load_profile_or_none, profile_model, transport_options_for
    from toolkit.transports import open_transport

    first = requests[0]
    transport = open_transport(first.device, transport_options_for(first, load_profile_or_none(first.profile)))
    results: list[dict[str, Any]] = []
    console = stderr_console()
    try:
        for request in requests:
            with console.status(f"profiling {Path(request.model).name} on {request.device} ...", spinner="dots"):
                results.append(profile_model(request, transport))
            if output:
                write_result(results[0] if len(requests) == 1 else results, output)
    finally:
        try:
            transport.close()
        except ToolkitError:
            pass
    return results


def side_by_side(results: list[dict[str, Any]]) -> list[list[str]]:
    """One row per fact, one column per model."""
    tables = [summary_rows(result) for result in results]
    labels = [label for label, _ in tables[0]]
    for table in tables[1:]:
        labels += [label for label, _ in table if label not in labels]
    return [[label, *(dict(table).get(label, "-") for table in tables)] for label in labels if label != "warning"] + [
        ["warnings", *("; ".join(t for label, t in table if label == "warning") or "-" for table in tables)]
    ]
