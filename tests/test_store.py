"""The SQLite results store: one row per job key, atomic writes, resume decisions, concurrent writers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from typing import Any

import numpy as np
import pytest

from toolkit.errors import BadInputError, DeviceLostError, RemoteCommandError
from toolkit.farm.documents import error_dict, failure_document, model_section, skipped_document
from toolkit.results import validate_result
from toolkit.store import ResultStore, needs_run, open_store


def make_result(
    device: str = "pi-1",
    model: str = "digits",
    variant: str = "int8",
    delegate: str = "xnnpack",
    threads: int | None = 2,
    samples: list[float] | None = None,
    job_id: str | None = None,
    farm: str = "test",
    size: int = 20_000,
    path: str | None = None,
    created_at: str | None = None,
) -> dict[str, Any]:
    """A complete, schema-valid result document with the given latency samples (ms)."""
    samples = list(samples if samples is not None else np.random.default_rng(0).normal(2.0, 0.05, 40))
    values = np.asarray(samples)
    document: dict[str, Any] = {
        "schema": "edgetk.result/1",
        "status": "ok",
        "model": {
            "path": path or f"/models/{model}.{variant}.tflite",
            "name": f"{model}.{variant}.tflite",
            "sha256": "ab" * 32,
            "size_bytes": size,
            "variant": variant,
        },
        "device": {"name": device, "uri": f"ssh://pi@{device}", "transport": "ssh", "profile": "rpi5"},
        "config": {"delegate_request": [delegate], "delegate": delegate, "threads": threads},
        "timings": {
            "init": 12.5,
            "first": 3.1,
            "count": len(samples),
            "p50": float(np.percentile(values, 50)),
            "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)),
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
            "samples": [float(v) for v in samples],
        },
        "memory": {"peak_rss_bytes": 60 << 20},
        "delegation": {"delegated_nodes": 9, "total_nodes": 10, "partitions": 1},
    }
    if created_at:
        document["created_at"] = created_at
    if job_id:
        document["job"] = {"farm": farm, "job_id": job_id, "model": model, "variant": variant}
    return validate_result(document).to_dict()


JOB = {
    "job_id": "k1",
    "farm": "test",
    "model": "digits",
    "variant": "int8",
    "device": "pi-1",
    "delegates": ["xnnpack"],
    "threads": 2,
}
DEVICE = {"name": "pi-1", "uri": "ssh://pi@pi-1"}
MODEL = model_section("/models/digits.int8.tflite", "cd" * 32, 1234, "int8")


def test_put_and_read_back_one_row_per_job_key(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        store.put(make_result(job_id="k1"))
        store.put(make_result(job_id="k1", samples=[5.0] * 10))  # same key: replaces, never duplicates
        store.put(make_result(job_id="k2", device="pi-2"))
        rows = store.status_by_job("test")
        assert sorted(rows) == ["k1", "k2"]
        assert rows["k1"]["p50_ms"] == 5.0
        documents = list(store.documents("test"))
        assert len(documents) == 2
        assert all(validate_result(d) for d in documents)


def test_wal_mode_and_schema_recorded(tmp_path):
    path = tmp_path / "r.db"
    ResultStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "edgetk.store/1"


def test_invalid_document_is_refused_and_nothing_is_written(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        bad = make_result(job_id="k1")
        bad["timings"]["p50"] = "fast"
        with pytest.raises(ValueError, match="p50"):
            store.put(bad)
        bad = make_result(job_id="k1")
        bad["schema"] = "edgetk.result/0"
        with pytest.raises(BadInputError):
            store.put(bad)
        assert store.count() == 0


def test_failed_and_skipped_rows_and_the_resume_rule(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        lost = error_dict(DeviceLostError("pi-1 stopped answering"))
        rejected = error_dict(RemoteCommandError("model rejected by the runtime"))
        store.put(failure_document({**JOB, "job_id": "lost"}, DEVICE, MODEL, lost, attempt=3), attempts=3)
        store.put(failure_document({**JOB, "job_id": "rejected"}, DEVICE, MODEL, rejected, attempt=1))
        store.put(skipped_document({**JOB, "job_id": "skipped"}, DEVICE, MODEL, "pi-1 quarantined"), status="skipped")
        store.put(make_result(job_id="done", farm="test"))
        rows = store.status_by_job("test")
    assert rows["lost"]["status"] == "failed"
    assert rows["lost"]["transient"] == 1
    assert rows["lost"]["attempts"] == 3
    assert rows["rejected"]["error_kind"] == "remote_failed"
    assert rows["rejected"]["transient"] == 0
    assert rows["skipped"]["status"] == "skipped"
    assert "quarantined" in rows["skipped"]["error_message"]
    assert [needs_run(rows.get(k)) for k in ("lost", "rejected", "skipped", "done", "missing")] == [
        True,
        False,
        True,
        False,
        True,
    ]
    assert needs_run(rows["rejected"], retry_failed=True)


def test_attempt_history_and_planned_jobs(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        store.plan("test", [JOB, {**JOB, "job_id": "k2"}])
        store.plan("test", [JOB])  # planning again is idempotent
        store.record_attempt("k1", 1, error_dict(DeviceLostError("gone")))
        assert [j["job_id"] for j in store.planned("test")] == ["k1", "k2"]
        history = store.attempts("k1")
        assert history[0]["error"]["type"] == "DeviceLostError"
        assert store.farms() == ["test"]


def test_concurrent_writers_from_threads_store_each_job_once(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    documents = [make_result(job_id=f"k{i}", samples=[1.0, 2.0, 3.0]) for i in range(200)]

    def write(part: list[dict]) -> None:
        for document in part:
            store.put(document)

    threads = [threading.Thread(target=write, args=(documents[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 200
    store.close()


WRITER = """
import sys, json
from toolkit.store import ResultStore
from tests.test_store import make_result
store = ResultStore(sys.argv[1])
for i in range(int(sys.argv[2])):
    store.put(make_result(job_id=f"{sys.argv[3]}-{i}", samples=[1.0, 2.0]))
    print(i, flush=True)
"""


def test_two_processes_share_one_store(tmp_path):
    path = tmp_path / "r.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), "60", name], stdout=subprocess.DEVNULL)
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with open_store(path, must_exist=True) as store:
        assert store.count() == 120


def test_sigkilled_writer_leaves_only_complete_rows(tmp_path):
    path = tmp_path / "r.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "100000", "x"], stdout=subprocess.PIPE, text=True)
    for _ in range(30):  # wait until it has committed some rows
        proc.stdout.readline()
    proc.kill()
    proc.wait()
    with open_store(path) as store:
        rows = store.rows()
        assert len(rows) >= 30
        for document in store.documents():
            validate_result(document)  # every stored document is whole
    assert len({r["job_id"] for r in rows}) == len(rows)


def test_open_store_errors_are_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="no such results store"):
        open_store(tmp_path / "missing.db", must_exist=True)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(BadInputError, match="not an edgetk results store"):
        ResultStore(junk)


def test_documents_round_trip_as_json(tmp_path):
    with ResultStore(tmp_path / "r.db") as store:
        original = make_result(job_id="k1")
        store.put(original)
        (stored,) = store.documents()
    assert json.dumps(stored, sort_keys=True) == json.dumps(original, sort_keys=True)
