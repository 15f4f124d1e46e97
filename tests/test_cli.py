"""The CLI's contract: fast, lazy help; one-line errors with hints and distinct exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from toolkit.cli import COMMANDS, main
from toolkit.errors import BadInputError, ExitCode, ToolkitError

HEAVY = ("tensorflow", "onnx", "onnx2tf", "onnxruntime", "torch", "tf_keras", "keras")

PROBE = """
import sys, json
from click.testing import CliRunner
from toolkit.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
print(json.dumps({"code": result.exit_code, "out": result.output,
                  "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def _help(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_top_level_help_lists_every_command_without_heavy_imports():
    result = _help(["--help"])
    assert result["code"] == 0
    assert result["heavy"] == []
    for name in COMMANDS:
        assert name in result["out"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_help_imports_nothing_heavy(name):
    result = _help([name, "--help"])
    assert result["code"] == 0, result["out"]
    assert result["heavy"] == [], f"`edgetk {name} --help` imported {result['heavy']}"
    assert "Usage:" in result["out"]


def _group_with(callback):
    @main.command("boom-test", hidden=True)
    def boom():
        callback()

    return boom


@pytest.fixture
def failing_command():
    made = []

    def make(callback):
        made.append(_group_with(callback))

    yield make
    main.commands.pop("boom-test", None)


def test_toolkit_error_prints_one_line_and_hint_with_its_exit_code(failing_command):
    def fail():
        raise BadInputError("model.onnx: not an ONNX file", "re-export the model")

    failing_command(fail)
    result = CliRunner().invoke(main, ["boom-test"])
    assert result.exit_code == ExitCode.BAD_INPUT
    lines = result.output.strip().splitlines()
    assert lines == ["error: model.onnx: not an ONNX file", "hint: re-export the model"]


def test_debug_flag_adds_the_traceback(failing_command):
    def fail():
        raise ToolkitError("it broke")

    failing_command(fail)
    result = CliRunner().invoke(main, ["--debug", "boom-test"])
    assert result.exit_code == ExitCode.ERROR
    assert "Traceback" in result.output
    assert result.output.strip().endswith("error: it broke")


def test_exit_codes_are_distinct():
    values = [int(c) for c in ExitCode]
    assert len(values) == len(set(values))


def test_console_script_is_installed_and_reports_version():
    proc = subprocess.run([sys.executable, "-m", "toolkit.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "edgetk" in proc.stdout


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert isinstance(main, click.Group)
