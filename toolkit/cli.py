"""The `edgetk` command line: a click group whose subcommands are imported only when invoked.

`edgetk --help` lists every command from the table below without importing any of them, so it
stays fast and never pulls in TensorFlow or onnx (tests/test_cli.py asserts this).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

import click

from toolkit.errors import ExitCode, ToolkitError

# name -> ("module:attribute", one-line help shown by `edgetk --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "convert": (
        "toolkit.commands.convert:convert",
        "Convert ONNX/Keras/SavedModel to TFLite variants and validate them.",
    ),
    "inspect": (
        "toolkit.commands.inspect:inspect_cmd",
        "List a .tflite model's operators and predict delegate fallbacks.",
    ),
    "run": ("toolkit.commands.run:run", "Run one inference with delegate selection and show what was chosen and why."),
    "delegates": (
        "toolkit.commands.delegates:delegates",
        "Show the TFLite runtimes and delegates this machine offers.",
    ),
    "profiles": ("toolkit.commands.profiles:profiles", "List and validate device profiles."),
    "profile": ("toolkit.commands.profile:profile", "Benchmark a model on a device (local, ssh:// or adb://)."),
    "farm": ("toolkit.commands.farm:farm", "Run a models x variants x devices x delegates matrix from a YAML file."),
    "report": ("toolkit.commands.report:report", "Build an HTML/Markdown/CSV/JSON report from stored results."),
    "compare": (
        "toolkit.commands.compare:compare",
        "Compare two result sets and fail on significant latency regressions.",
    ),
}


def debug_enabled(ctx: click.Context | None = None) -> bool:
    if os.environ.get("EDGETK_DEBUG"):
        return True
    ctx = ctx or click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.obj and isinstance(ctx.obj, dict) and ctx.obj.get("debug"):
            return True
        ctx = ctx.parent
    return False


class ReportedError(click.ClickException):
    """A ToolkitError on its way out: one line, a hint, the error's own exit code."""

    def __init__(self, error: ToolkitError, debug: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.exit_code = int(error.exit_code)
        self.debug = debug

    def show(self, file: Any = None) -> None:
        stream = file or sys.stderr
        if self.debug:
            traceback.print_exception(type(self.error), self.error, self.error.__traceback__, file=stream)
        click.echo(f"error: {self.error.message}", file=stream)
        if self.error.hint:
            click.echo(f"hint: {self.error.hint}", file=stream)


class LazyGroup(click.Group):
    """A group whose commands live in a table of import strings (click's LazyGroup pattern)."""

    def __init__(self, *args: Any, lazy_commands: dict[str, tuple[str, str]] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy_commands[name][1]) for name in self.list_commands(ctx) if name in self.lazy_commands]
        rows += [
            (name, cmd.get_short_help_str(formatter.width))
            for name, cmd in self.commands.items()
            if name not in self.lazy_commands and not cmd.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(sorted(rows))

    def _load(self, name: str) -> click.Command:
        target, _ = self.lazy_commands[name]
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ToolkitError as error:
            raise ReportedError(error, debug_enabled(ctx)) from error
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors (also EDGETK_DEBUG=1).")
@click.version_option(package_name="edgetk", prog_name="edgetk")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """edgetk: take a trained model to phones and boards, and prove how fast it runs there.

    \b
    Exit codes: 0 ok, 1 internal error, 2 usage, 3 bad input file, 4 bad config,
    5 missing dependency, 6 conversion failed, 7 delegate error, 8 accuracy gate,
    10 unreachable, 11 auth refused, 12 host key, 13 device setup, 14 timeout,
    15 device lost, 16 remote command failed, 17 runner crashed,
    20 farm incomplete, 21 regression, 130 interrupted.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


if __name__ == "__main__":  # pragma: no cover
    main()
