"""runner.pyz: deterministic, minimal, and loadable by the oldest Python the runner supports."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from toolkit.runner.pack import archive_entries, build_bytes, build_runner, packed_files
from toolkit.runner.protocol import encode_request, unframe


def test_same_sources_give_the_same_bytes_whatever_their_timestamps(repo_root, tmp_path):
    first = build_bytes(repo_root)
    copy = tmp_path / "copy"
    for name, path in packed_files(repo_root):
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        os.utime(target, (1_000_000_000, 1_000_000_000))
    (copy / "toolkit" / "runner" / "pack.py").write_text("# not packed\n")
    (copy / "delegates" / "__pycache__").mkdir()
    (copy / "delegates" / "__pycache__" / "junk.cpython-311.pyc").write_bytes(b"junk")
    assert build_bytes(copy) == first
    again = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, hashlib; from toolkit.runner.pack import build_bytes; "
            "sys.stdout.write(hashlib.sha256(build_bytes()).hexdigest())",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=repo_root,
    ).stdout
    assert again == hashlib.sha256(first).hexdigest()  # another process, another hash seed


def test_archive_holds_the_runner_and_delegates_only(repo_root):
    names = [name for name, _ in archive_entries(repo_root)]
    assert "__main__.py" in names
    assert "toolkit/errors.py" in names
    assert "toolkit/runner/measure.py" in names
    assert "delegates/model_runner.py" in names
    assert "toolkit/runner/pack.py" not in names
    singles = {"__main__.py", "toolkit/__init__.py", "toolkit/__init__.pyc", "toolkit/errors.py", "toolkit/errors.pyc"}
    strays = [n for n in names if n not in singles and not n.startswith(("toolkit/runner/", "delegates/"))]
    assert strays == []
    assert not [n for n in names if "__pycache__" in n]
    for name in names:
        if name.endswith(".py") and name != "__main__.py":
            assert name + "c" in names, f"no bytecode beside {name}"
    with zipfile.ZipFile(build_runner().path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def _python39() -> str | None:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(root.glob("3.9*/bin/python")) if root.is_dir() else []
    return str(found[0]) if found else shutil.which("python3.9")


@pytest.mark.skipif(_python39() is None, reason="no Python 3.9 here")
def test_runner_archive_works_on_python_39(tmp_path):
    """Every module compiles under 3.9, and the 3.9 interpreter runs the archive (ignoring our .pyc)."""
    python = _python39()
    package = build_runner()
    check = (
        "import sys, zipfile\n"
        "z = zipfile.ZipFile(sys.argv[1])\n"
        "for n in z.namelist():\n"
        "    if n.endswith('.py'):\n"
        "        compile(z.read(n), n, 'exec', dont_inherit=True)\n"
        "print('compiled', sum(n.endswith('.py') for n in z.namelist()))\n"
    )
    out = subprocess.run([python, "-c", check, str(package.path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # The supervisor answers on 3.9 (here: the model it needs is not on the "device").
    request = {"rundir": str(tmp_path / "run"), "nonce": "n39", "requires": [str(tmp_path / "gone.tflite")]}
    proc = subprocess.run(
        [python, str(package.path), "profile", encode_request(request)], capture_output=True, text=True
    )
    document = unframe(proc.stdout, "n39")
    assert document == {"missing": [str(tmp_path / "gone.tflite")], "rundir_removed": True}, proc.stderr
    assert proc.returncode == 96


def test_runner_usage_error_without_arguments():
    proc = subprocess.run([sys.executable, str(build_runner().path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "runner.pyz profile" in proc.stderr
    assert json.dumps  # the archive never prints a document without a request


def test_threads_starting_together_build_the_runner_once(repo_root, tmp_path, monkeypatch):
    import threading

    import toolkit.runner.pack as pack

    builds = []
    real_build = pack.build_bytes

    def counting_build(root):
        builds.append(root)
        return real_build(root)

    monkeypatch.setattr(pack, "build_bytes", counting_build)
    start = threading.Barrier(6)
    packages = []

    def build():
        start.wait()
        packages.append(build_runner(cache_dir=tmp_path / "cache", root=repo_root))

    threads = [threading.Thread(target=build) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert len(packages) == 6
    assert len({(p.path, p.sha256) for p in packages}) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [packages[0].path.name]  # no temporary left
    assert hashlib.sha256(packages[0].path.read_bytes()).hexdigest() == packages[0].sha256
