"""`edgetk convert MODEL -o OUT --quant ...`: TFLite variants with validation reports and metadata."""

from __future__ import annotations

from typing import Any

import click

from toolkit.errors import ToolkitError
from toolkit.output import emit_json, format_bytes, json_option, print_table, stderr_console


def _floats(value: str | None, flag: str) -> list[float] | None:
    from toolkit.errors import ConfigError

    if value is None:
        return None
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(
            f"{flag} {value!r}: expected comma-separated numbers", f"e.g. {flag} 0.485,0.456,0.406"
        ) from exc


def _size(value: str | None) -> list[int] | None:
    from toolkit.errors import ConfigError

    if value is None:
        return None
    parts = value.lower().replace(",", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--resize {value!r}: expected HEIGHTxWIDTH", "e.g. --resize 224x224")
    return [int(p) for p in parts]


def _input_shapes(values: tuple[str, ...]) -> dict[str, list[int]]:
    from toolkit.errors import ConfigError

    shapes = {}
    for value in values:
        name, sep, dims = value.rpartition(":")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ConfigError(
                f"--input-shape {value!r}: expected NAME:D0,D1,...", "e.g. --input-shape input:1,3,224,224"
            )
    return shapes


def build_recipe(recipe_path: str | None, flags: dict[str, Any]) -> Any:
    """An ImageRecipe from a YAML file and/or flags (flags win), or None when neither is given."""
    from converters.calibration import ImageRecipe, load_recipe
    from toolkit.yamlconfig import validate

    given = {k: v for k, v in flags.items() if v is not None}
    if recipe_path is None and not given:
        return None
    base = load_recipe(recipe_path).model_dump() if recipe_path else {}
    if "image_input" in given:
        given["input"] = given.pop("image_input")
    return validate(ImageRecipe, {**base, **given}, "image preprocessing flags")


def _progress_printer(quiet: bool):
    """Show each step on stderr as it starts (rich status line on a terminal, plain lines otherwise)."""
    console = stderr_console()
    if quiet:
        return (lambda message: None), None
    if console.is_terminal:
        status = console.status("starting conversion")
        status.start()
        return status.update, status
    return (lambda message: console.print(f"[dim]convert:[/dim] {message}", highlight=False)), None


def _accuracy_cell(variant: Any) -> str:
    accuracy = variant.accuracy
    if not accuracy:
        return "-"
    return f"{100 * accuracy['variant']:.2f}% ({accuracy['delta_points']:+.2f})"


def _cosine_cell(value: float | None) -> str:
    # Six decimals: the interesting differences between variants are in the 4th-6th digit.
    return "-" if value is None else f"{value:.6f}"


def _table_console() -> Any:
    """stdout console; 140 columns when piped (rich's 80 would wrap the variant names)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=140)


def _print_results(result: Any) -> None:
    evaluation = result.evaluation
    rows = [
        [
            name,
            format_bytes(v.size_bytes),
            v.ratio_to_fp32,
            v.metrics.get("max_abs_error"),
            _cosine_cell(v.metrics.get("cosine")),
            v.metrics.get("snr_db"),
            v.metrics.get("top1_agreement"),
            _accuracy_cell(v),
        ]
        for name, v in result.variants.items()
    ]
    title = f"{result.source.name}: {evaluation['samples']} eval samples from {evaluation['source']}"
    columns = ["variant", "size", "x fp32", "max|err|", "cosine", "SNR dB", "top-1", "accuracy (vs src)"]
    print_table(title, columns, rows, console=_table_console())
    first = next(iter(result.variants.values()))
    if first.accuracy:
        click.echo(f"source model accuracy: {100 * first.accuracy['source']:.2f}% ({first.accuracy['output']!r})")
    calibration = result.calibration
    if calibration and calibration.get("synthetic"):
        click.echo("warning: calibrated on SYNTHETIC random data; quantized accuracy is not representative", err=True)
    for v in result.variants.values():
        click.echo(f"wrote {v.tflite_path} and {v.report_path.name}")


def _show_worker_log(error: Any) -> None:
    """With --debug, the last lines the conversion worker (TensorFlow, onnx2tf) printed."""
    from toolkit.cli import debug_enabled

    tail = error.details.get("log_tail") if isinstance(error.details, dict) else None
    if tail and debug_enabled():
        click.echo("--- conversion worker log (last lines) ---", err=True)
        for line in tail:
            click.echo(line, err=True)


@click.command("convert")
@click.argument("model", type=click.Path(path_type=str))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "-q",
    "--quant",
    default="fp32",
    show_default=True,
    help="Variants: fp32,fp16,dynamic,int8,int8-full,int16x8, or all / float / int.",
)
@click.option(
    "--calib", "calib", type=click.Path(exists=False), help="Calibration data: .npy, .npz or an image folder."
)
@click.option(
    "--eval", "eval_data", type=click.Path(exists=False), help="Evaluation data (default: 20% held out of --calib)."
)
@click.option("--labels", type=click.Path(exists=False), help="Class labels for the evaluation data (.npy or text).")
@click.option("--recipe", type=click.Path(exists=False), help="YAML image preprocessing recipe for image folders.")
@click.option("--resize", help="Image size HEIGHTxWIDTH (default: the model input size).")
@click.option(
    "--channel-order", type=click.Choice(["RGB", "BGR", "GRAY"], case_sensitive=False), help="Image channels."
)
@click.option("--scale", type=float, help="Divide pixel values by this first (default 255).")
@click.option("--mean", help="Per-channel mean subtracted after scaling, e.g. 0.485,0.456,0.406.")
@click.option("--std", help="Per-channel std divided by after scaling, e.g. 0.229,0.224,0.225.")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC"], case_sensitive=False), help="Source model input layout.")
@click.option("--image-input", help="Model input the images feed (multi-input models).")
@click.option("--synthetic-calibration", is_flag=True, help="Calibrate on random data (inaccurate; reports say so).")
@click.option("--calib-samples", type=int, default=256, show_default=True, help="Use at most N calibration samples.")
@click.option("--eval-samples", type=int, default=1000, show_default=True, help="Validate on at most N samples.")
@click.option("--holdout", type=float, default=0.2, show_default=True, help="Fraction of --calib held out for eval.")
@click.option("--per-tensor", is_flag=True, help="Per-tensor instead of per-channel weight quantization.")
@click.option("--input-shape", "input_shape", multiple=True, help="Fix dynamic dims: NAME:1,3,224,224 (repeatable).")
@click.option("--keep-layout", multiple=True, help="Keep this ONNX input's layout (no NCHW->NHWC); repeatable.")
@click.option("--timeout", type=float, help="Give up after this many seconds.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@json_option
def convert(
    model: str,
    out_dir: str,
    quant: str,
    calib: str | None,
    eval_data: str | None,
    labels: str | None,
    recipe: str | None,
    synthetic_calibration: bool,
    calib_samples: int,
    eval_samples: int,
    holdout: float,
    per_tensor: bool,
    input_shape: tuple[str, ...],
    keep_layout: tuple[str, ...],
    timeout: float | None,
    quiet: bool,
    as_json: bool,
    **image_flags: Any,
) -> None:
    """Convert MODEL (.onnx, .keras/.h5 or a SavedModel folder) to TFLite variants and validate each.

    \b
    Every variant is checked against the source model (onnxruntime for ONNX, TensorFlow for
    Keras/SavedModel) and gets OUT/<stem>.<variant>.tflite (with edgetk metadata: layout
    permutation, normalization, calibration) and OUT/<stem>.<variant>.report.json.

    \b
    Examples:
      edgetk convert model.onnx -o out --quant all --calib calib.npz --eval eval.npz
      edgetk convert model.onnx -o out --quant int8 --calib images/ --recipe recipe.yaml
    """
    from converters import convert_model
    from converters.variants import parse_variants

    variants = parse_variants(quant)
    flags = {
        "resize": _size(image_flags.get("resize")),
        "channel_order": (image_flags.get("channel_order") or "").upper() or None,
        "scale": image_flags.get("scale"),
        "mean": _floats(image_flags.get("mean"), "--mean"),
        "std": _floats(image_flags.get("std"), "--std"),
        "layout": (image_flags.get("layout") or "").upper() or None,
        "image_input": image_flags.get("image_input"),
    }
    image_recipe = build_recipe(recipe, flags)
    say, status = _progress_printer(quiet or as_json)
    try:
        result = convert_model(
            model,
            out_dir,
            variants,
            calibration=calib,
            evaluation=eval_data,
            labels=labels,
            recipe=image_recipe,
            synthetic_calibration=synthetic_calibration,
            calibration_samples=calib_samples,
            eval_samples=eval_samples,
            holdout_fraction=holdout,
            per_channel=not per_tensor,
            input_shapes=_input_shapes(input_shape),
            keep_layout=keep_layout,
            progress=say,
            timeout=timeout,
        )
    except ToolkitError as error:
        _show_worker_log(error)
        raise
    finally:
        if status is not None:
            status.stop()
    if as_json:
        emit_json(result.to_dict())
        return
    _print_results(result)
