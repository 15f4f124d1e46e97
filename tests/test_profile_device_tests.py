"""device_tests/ is gated (STYLE.md #10): skipped without --device, failing with --no-skip, and it
passes against a real device — this machine, through the local transport."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _pytest(repo_root, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "device_tests", "-q", "-rs", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )


def test_device_tests_skip_without_a_device(repo_root):
    proc = _pytest(repo_root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped" in proc.stdout
    assert "passed" not in proc.stdout
    assert "no --device given" in proc.stdout


def test_device_tests_fail_without_a_device_when_asked_not_to_skip(repo_root):
    proc = _pytest(repo_root, "--no-skip")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "no --device given (and --no-skip is set)" in proc.stdout


@pytest.mark.slow
def test_device_tests_pass_on_the_local_device(repo_root):
    proc = _pytest(repo_root, "--device", "local", "--profile", "local")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
