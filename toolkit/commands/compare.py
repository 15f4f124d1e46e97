"""`edgetk compare BASELINE NEW --max-regression 5%`: a CI gate on significant latency regressions."""

from __future__ import annotations

import click

from toolkit.output import emit_json, json_option, print_table, stderr_console


@click.command("compare")
@click.argument("baseline", type=click.Path(exists=True, dir_okay=True))
@click.argument("new", type=click.Path(exists=True, dir_okay=True))
@click.option(
    "--max-regression",
    default="5%",
    show_default=True,
    help="Allowed p50 growth (e.g. 5% or 0.05) before a significant change fails.",
)
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    help="Significance level of the one-sided Mann–Whitney U test on the latency samples.",
)
@json_option
def compare(baseline: str, new: str, max_regression: str, alpha: float, as_json: bool) -> None:
    """Compare two result sets (stores, JSON files or folders) configuration by configuration.

    \b
    Exits 21 when some configuration's p50 grew by more than --max-regression AND the growth is
    statistically significant on the stored samples; 0 otherwise.
    """
    from toolkit.errors import RegressionError
    from toolkit.report import load_rows
    from toolkit.report.compare import compare_rows, parse_threshold, regressions

    threshold = parse_threshold(max_regression)
    comparisons = compare_rows(load_rows([baseline]), load_rows([new]), threshold, alpha)
    bad = regressions(comparisons)
    if as_json:
        emit_json(
            {
                "max_regression": threshold,
                "alpha": alpha,
                "regressions": len(bad),
                "comparisons": [c.to_dict() for c in comparisons],
            }
        )
    else:
        rows = [
            [
                c.label,
                c.baseline_p50,
                c.new_p50,
                "-" if c.change is None else f"{100 * c.change:+.1f}%",
                "-" if c.p_value is None else f"{c.p_value:.3g}",
                c.verdict,
            ]
            for c in comparisons
        ]
        print_table(
            f"p50 latency, baseline vs new (max regression {100 * threshold:g}%, alpha {alpha:g})",
            ["configuration", "baseline ms", "new ms", "change", "p", "verdict"],
            rows,
            stderr_console(),
        )
    if bad:
        worst = max(bad, key=lambda c: c.change or 0.0)
        raise RegressionError(
            f"{len(bad)} configuration(s) regressed beyond {100 * threshold:g}%; worst: {worst.label} "
            f"{100 * (worst.change or 0):+.1f}% (p={worst.p_value:.2g})",
            "investigate the change, or re-baseline if the slowdown is intended",
        )
