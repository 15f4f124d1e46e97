"""The oldest Python the workstation side supports (pyproject's requires-python) really runs it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _requires_python() -> str:
    text = (REPO / "pyproject.toml").read_text()
    return re.search(r'^requires-python = ">=(\d+\.\d+)"', text, re.MULTILINE).group(1)


def _oldest_python() -> str | None:
    version = _requires_python()
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(root.glob(f"{version}.*/bin/python")) if root.is_dir() else []
    return str(found[0]) if found else shutil.which(f"python{version}")


@pytest.mark.slow
@pytest.mark.skipif(_oldest_python() is None, reason=f"no Python {_requires_python()} here")
def test_core_commands_run_on_the_oldest_supported_python(tmp_path, tflite_cnn_fp32):
    source = tmp_path / "src"  # a copy: pip would leave build/ and egg-info in the checkout
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, source / name)
    venv = tmp_path / "venv"
    subprocess.run([_oldest_python(), "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", str(source)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]
    edgetk = venv / "bin" / "edgetk"
    for argv in (
        ["farm", "validate", str(REPO / "examples" / "farm.yaml")],
        ["profiles", "validate"],
        ["inspect", str(tflite_cnn_fp32), "--json"],
    ):
        out = subprocess.run([edgetk, *argv], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, (argv, out.stderr[-3000:])
