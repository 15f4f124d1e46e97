"""The README is a user's first contact: every command it shows must work as shown.

- every `$ edgetk ...` line in README.md is run, in order, in a scratch copy of examples/, and must
  exit with the code its `# exit N` comment names (0 otherwise); `error:`/`hint:` lines shown
  under a command must be what it printed;
- the README's Python example runs;
- every `edgetk ...` command line in README.md and docs/*.md names an existing command and only
  options that command has (device examples that need real hardware are checked this way).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from toolkit.cli import main

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
EDGETK = str(Path(sys.executable).with_name("edgetk"))


def code_blocks(path: Path) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced code block."""
    blocks, lang, lines, inside = [], "", [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            if inside:
                blocks.append((lang, lines))
                lines = []
            else:
                lang = line[3:].strip()
            inside = not inside
        elif inside:
            lines.append(line)
    return blocks


def shell_examples(path: Path) -> list[tuple[str, int, list[str]]]:
    """Each `$ edgetk` command with its expected exit code and the lines shown under it."""
    out = []
    for lang, lines in code_blocks(path):
        if lang not in ("", "console", "shell", "bash"):
            continue
        current = None
        for line in lines:
            if line.startswith("$ edgetk "):
                command, _, comment = line[2:].partition("#")
                match = re.search(r"exit (\d+)", comment)
                current = (command.strip(), int(match.group(1)) if match else 0, [])
                out.append(current)
            elif current is not None:
                current[2].append(line)
    return out


def command_lines(path: Path) -> list[str]:
    """Every command line that invokes edgetk inside a code block (with or without `$ `)."""
    found = []
    for lang, lines in code_blocks(path):
        if lang not in ("", "console", "shell", "bash"):
            continue
        for line in lines:
            text = line[2:] if line.startswith("$ ") else line
            if re.match(r"^edgetk \w", text):
                found.append(text.partition(" #")[0].strip())
    return found


def _resolve(tokens: list[str]) -> tuple[list[click.Command], list[str]]:
    """Follow subcommands; a usage synopsis (`list|validate|show`) must name existing ones."""
    commands: list[click.Command] = [main]
    rest = tokens[1:]
    ctx = click.Context(main)
    while isinstance(commands[0], click.Group) and rest and not rest[0].startswith(("-", "[")):
        names = [name for name in rest[0].strip("[]").split("|") if name]
        commands = [commands[0].get_command(ctx, name) for name in names]
        assert all(commands), f"`{' '.join(tokens)}`: no command {rest[0]!r}"
        rest = rest[1:]
    return commands, rest


def _option_names(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: p.name)
def test_every_command_shown_exists_with_its_options(doc):
    lines = command_lines(doc)
    if doc == README:
        assert len(lines) >= 15
    for line in lines:
        tokens = shlex.split(line.replace("\\", " "))
        commands, rest = _resolve(tokens)
        allowed = set().union(*(_option_names(c) for c in commands))
        synopsis = any(c in line for c in "[|")
        for token in rest:
            for part in token.strip("[]").split("|") if synopsis else [token]:
                if part.startswith("-") and len(part) > 1 and not re.match(r"^-\d", part):
                    flag = part.split("=", 1)[0]
                    assert flag in allowed, f"{doc.name}: `{line}`: no option {flag}"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A working folder with a copy of examples/ (README commands write demo-out/ there)."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "examples", root / "examples")
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "120"
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.slow
def test_readme_commands_run_as_shown(scratch):
    examples = shell_examples(README)
    assert len(examples) >= 12
    for command, expected_code, shown in examples:
        argv = [EDGETK, *shlex.split(command)[1:]]
        proc = subprocess.run(argv, cwd=scratch, env=_env(), capture_output=True, text=True, timeout=900)
        output = proc.stdout + proc.stderr
        assert proc.returncode == expected_code, f"`{command}` exited {proc.returncode}:\n{output[-3000:]}"
        for line in shown:
            if line.startswith(("error: ", "hint: ")):
                assert line in output.splitlines(), f"`{command}` did not print {line!r}:\n{output[-3000:]}"
    # What the demo promises to leave behind.
    assert (scratch / "demo-out" / "report.html").stat().st_size > 10_000
    assert not (scratch / "demo-out" / "no-calib").exists(), "a failed conversion left its output folder"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    code = "\n".join(next(lines for lang, lines in code_blocks(README) if lang == "python"))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "xnnpack" in proc.stdout
    assert (tmp_path / "demo-out" / "api" / "digits.int8.tflite").exists()
