"""Load: 20 simulated ssh devices (private sshd servers on 127.0.0.2-21) and 500 small profiling
jobs; every result is stored exactly once.

Each device logs in with a HOME of its own, as a separate board would: through this machine's
~/.bashrc (root's runs `pyenv init`) every ssh command would fork hundreds of processes and queue
on one pyenv lock with the other 19 devices. That made the run slow and sensitive to other load,
and wrapped the 32768-PID space every few seconds, so any process signalled by a remembered PID
anywhere on the machine could hit one of this test's runners (see tests/servers/procs.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.fixtures.ssh import needs_sshd
from toolkit.results import validate_result
from toolkit.store import open_store

REPO = Path(__file__).resolve().parents[1]
DEVICES = int(os.environ.get("EDGETK_LOAD_DEVICES", 20))
MODELS = ("cnn_fp32", "cnn_int8", "cnn_int8_io", "cnn_fp32_nchw", "cnn_int8_io_nchw")
THREADS = [1, 2, 3, 4, 5][: int(os.environ.get("EDGETK_LOAD_THREADS", 5))]
JOBS = DEVICES * len(MODELS) * len(THREADS)


def _failure_details(store_path: Path) -> list[dict]:
    with open_store(store_path) as store:
        return [d["error"] for d in store.documents("load", ["failed"])][:3]


@needs_sshd
@pytest.mark.slow
@pytest.mark.network
def test_twenty_devices_five_hundred_jobs_each_stored_once(sshd_factory, tmp_path, tflite_models):
    for name in MODELS:
        shutil.copy(tflite_models[name], tmp_path / f"{name}.tflite")
    servers = [sshd_factory(host=f"127.0.0.{i + 2}", own_home=True) for i in range(DEVICES)]
    devices = [
        {
            "name": f"board-{i:02d}",
            "uri": server.uri,
            "tags": ["even" if i % 2 == 0 else "odd"],
            "transport": {**server.transport_options(), "python": sys.executable},
        }
        for i, server in enumerate(servers)
    ]
    farm = tmp_path / "load.yaml"
    farm.write_text(
        yaml.safe_dump(
            {
                "name": "load",
                "models": [f"{m}.tflite" for m in MODELS],
                "devices": devices,
                "matrix": {"devices": ["tag:even", "tag:odd"], "delegates": ["xnnpack"], "threads": THREADS},
                "settings": {"warmup_runs": 1, "warmup_min_s": 0.0, "num_runs": 5, "min_s": 0.0, "max_s": 0.2},
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "farm", "run", str(farm), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1500,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    failures = [e for e in events if e["event"] in ("job_retry", "job_finished") and e.get("error")]
    assert proc.returncode == 0, (proc.stderr[-2000:], failures[:5], _failure_details(tmp_path / "load.results.db"))
    assert events[0]["planned"] == JOBS
    finished = [e for e in events if e["event"] == "job_finished"]
    assert len(finished) == JOBS
    assert len({e["job_id"] for e in finished}) == JOBS
    assert Counter(e["device"] for e in finished) == {d["name"]: len(MODELS) * len(THREADS) for d in devices}
    assert {e["status"] for e in finished} == {"ok"}

    with open_store(tmp_path / "load.results.db") as store:
        rows = store.rows("load")
        assert len(rows) == JOBS
        assert len({r["job_id"] for r in rows}) == JOBS
        documents = list(store.documents("load"))
    assert len(documents) == JOBS
    results = [validate_result(d) for d in documents]
    cells = {(r.device.name, r.job.model, r.config.threads) for r in results}
    assert len(cells) == JOBS  # every cell of the matrix exactly once

    again = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "farm", "run", str(farm), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert again.returncode == 0
    assert json.loads(again.stdout.splitlines()[0])["pending"] == 0
