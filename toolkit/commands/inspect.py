"""`edgetk inspect MODEL`: operators, tensors and predicted delegate fallbacks, without TensorFlow."""

from __future__ import annotations

from typing import Any

import click

from toolkit.output import emit_json, format_bytes, json_option, print_table, stdout_console


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--delegate",
    "delegates",
    multiple=True,
    help="Predict for these delegates (gpu, nnapi, edgetpu, vx, armnn; repeat or comma-separate). Default: gpu,nnapi,edgetpu.",
)
@click.option(
    "--android-api", type=click.IntRange(27, 40), default=30, show_default=True, help="Android API level for NNAPI."
)
@json_option
def inspect_cmd(model: str, delegates: tuple[str, ...], android_api: int, as_json: bool) -> None:
    """List a .tflite model's operators and predict which ops each delegate leaves on the CPU."""
    from delegates.inspection import inspect_model

    report = inspect_model(model, _split(delegates) or None, android_api=android_api)
    if as_json:
        emit_json(report)
        return
    show_report(report)


def show_report(report: dict[str, Any]) -> None:
    console = stdout_console()
    file = report["file"]
    console.print(f"[bold]{file['path']}[/bold]  {format_bytes(file['size_bytes'])}  sha256 {file['sha256'][:12]}")
    meta = report.get("metadata") or {}
    source = (meta.get("source") or {}).get("name") if isinstance(meta, dict) else None
    console.print(
        f"variant {report['variant']}"
        + (f" (edgetk metadata: {meta.get('variant')}, from {source})" if meta and "variant" in meta else "")
        + f"; {report['node_count']} nodes; {report['subgraphs']} subgraph(s); Edge TPU compiled: "
        + ("yes" if report["edgetpu_compiled"] else "no")
    )
    rows = [["input", t["name"], t["shape"], t["dtype"], _quant(t)] for t in report["inputs"]]
    rows += [["output", t["name"], t["shape"], t["dtype"], _quant(t)] for t in report["outputs"]]
    print_table("Inputs and outputs", ["", "name", "shape", "dtype", "quantization"], rows, console)
    ops = [[r["op"], r["version"], r["count"], "custom" if r["custom"] else "builtin"] for r in report["operators"]]
    print_table("Operators", ["operator", "version", "count", "kind"], ops, console)
    if report["custom_ops"]:
        console.print(f"custom ops: {', '.join(report['custom_ops'])}")
    print_table(
        "Predicted delegation",
        ["delegate", "delegated", "partitions", "left on CPU", "notes"],
        _prediction_rows(report),
        console,
    )


def _quant(tensor: dict[str, Any]) -> str:
    q = tensor.get("quantization")
    if not q:
        return "-"
    if q["per_channel"]:
        return f"per-channel (axis {q['axis']}, {len(q['scale'])} scales)"
    return f"scale {q['scale']:.6g}, zero point {q['zero_point']}"


def _prediction_rows(report: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, p in report["predictions"].items():
        fallback = ", ".join(f"{op}×{n}" if n > 1 else op for op, n in p["fallback_ops"]) or "nothing"
        notes = "; ".join(([p["blocking"]] if p["blocking"] else []) + p["notes"])
        rows.append([name, f"{p['supported_nodes']}/{p['total_nodes']}", p["partitions"], fallback, notes])
    return rows
