"""`edgetk report RESULTS... -o report.html`: tables, plots and recommendations from stored results."""

from __future__ import annotations

import click

from toolkit.output import emit_json, json_option, print_table, stderr_console


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=True))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write the report here (default report.<format>)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "csv", "json"]),
    default=None,
    help="Output format (default: from the -o suffix, else html).",
)
@click.option(
    "--accuracy-budget",
    type=float,
    default=1.0,
    show_default=True,
    help="Points of accuracy a variant may lose against the source model and still be recommended.",
)
@click.option(
    "--recommendations",
    "recommendations_path",
    type=click.Path(dir_okay=False),
    help="Where to write the per-device recommendations (YAML; default beside the report).",
)
@json_option
def report(
    results: tuple[str, ...],
    output: str | None,
    fmt: str | None,
    accuracy_budget: float,
    recommendations_path: str | None,
    as_json: bool,
) -> None:
    """Build a report from a results store (.db), result JSON files or folders of them.

    \b
    The HTML page is self-contained (plots embedded). The recommendation per device is the
    fastest p50 among configurations within the accuracy budget; ties go to the smaller file.
    """
    from toolkit.report import default_recommendations_path, write_report
    from toolkit.report.render import format_for_path, render_json

    fmt = fmt or (format_for_path(output) if output else "html")
    output = output or f"report.{'md' if fmt == 'md' else fmt}"
    built = write_report(list(results), output, fmt, accuracy_budget, recommendations_path)
    yaml_path = recommendations_path or default_recommendations_path(__import__("pathlib").Path(output))
    if as_json:
        import json

        emit_json({**json.loads(render_json(built)), "output": output, "recommendations_file": str(yaml_path)})
        return
    console = stderr_console()
    rows = [
        [r.device, r.model, r.variant, r.delegate, r.threads if r.threads is not None else "default", r.p50_ms]
        for r in built.recommendations.values()
    ]
    print_table(
        "Recommendation per device", ["device", "model", "variant", "delegate", "threads", "p50 ms"], rows, console
    )
    counts = built.counts()
    console.print(
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped -> wrote {output} and {yaml_path}"
    )
