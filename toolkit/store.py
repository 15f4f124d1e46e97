"""The results store: one SQLite file (WAL), one row per job key, written as each job finishes.

Each write is its own transaction, so a controller killed at any moment leaves every finished job
stored exactly once and nothing half-written; the unique job key makes a resumed run skip what is
done. Result documents are validated against `toolkit.results.Result` before they are stored.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from toolkit.errors import BadInputError
from toolkit.results import validate_result

STORE_SCHEMA = "edgetk.store/1"
STATUSES = ("ok", "failed", "skipped")

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    farm TEXT NOT NULL,
    spec TEXT NOT NULL,
    planned_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT PRIMARY KEY,
    farm TEXT,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
    device TEXT,
    model TEXT,
    variant TEXT,
    delegate TEXT,
    threads INTEGER,
    p50_ms REAL,
    error_kind TEXT,
    error_message TEXT,
    transient INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1,
    stored_at TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_farm ON results (farm, status);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at TEXT NOT NULL,
    error TEXT NOT NULL
);
"""


# How long a writer waits for another process's transaction (and WAL set-up) before giving up.
BUSY_TIMEOUT_S = 30.0


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch to WAL; retry while another connection is busy with the file.

    Changing the journal mode needs the file to itself, and SQLite reports "database is locked" at
    once instead of waiting its busy timeout, e.g. when two processes open a new store together.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


class ResultStore:
    """A SQLite results file; safe to share between threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            _enable_wal(self._db)
            # NORMAL in WAL mode survives a killed process; only an OS crash may lose the last commit.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_DDL)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise BadInputError(
                f"{self.path}: not an edgetk results store ({exc})", "pass a .db written by edgetk"
            ) from exc

    def _check_schema(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (STORE_SCHEMA,))
        elif row[0] != STORE_SCHEMA:
            raise BadInputError(f"{self.path}: store schema {row[0]!r}, this edgetk reads {STORE_SCHEMA!r}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing --------------------------------------------------------------------------------

    def plan(self, farm: str, jobs: Iterable[dict[str, Any]]) -> None:
        """Record the planned jobs of a farm (kept so `farm status` and reports know the matrix)."""
        rows = [(j["job_id"], farm, json.dumps(j, sort_keys=True), _now()) for j in jobs]
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO jobs (job_id, farm, spec, planned_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (job_id) DO UPDATE SET spec = excluded.spec",
                rows,
            )

    def put(self, document: dict[str, Any], status: str | None = None, attempts: int = 1) -> str:
        """Validate and store one result document (replacing an earlier row for the same job key)."""
        result = validate_result(document)
        status = status or result.status
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        key = result.job.job_id if result.job else result.id
        error = result.error
        row = (
            key,
            result.job.farm if result.job else None,
            status,
            result.device.name,
            result.job.model if result.job and result.job.model else result.model.name,
            result.model.variant,
            result.config.delegate or ",".join(result.config.delegate_request),
            result.config.threads,
            result.timings.p50,
            error.kind if error else None,
            error.message if error else None,
            int(bool(error and error.transient)),
            attempts,
            _now(),
            json.dumps(result.to_dict(), sort_keys=True),
        )
        with self._transaction() as db:
            db.execute(
                "INSERT INTO results (job_id, farm, status, device, model, variant, delegate, threads, p50_ms,"
                " error_kind, error_message, transient, attempts, stored_at, document)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (job_id) DO UPDATE SET farm = excluded.farm, status = excluded.status,"
                " device = excluded.device, model = excluded.model, variant = excluded.variant,"
                " delegate = excluded.delegate, threads = excluded.threads, p50_ms = excluded.p50_ms,"
                " error_kind = excluded.error_kind, error_message = excluded.error_message,"
                " transient = excluded.transient, attempts = excluded.attempts,"
                " stored_at = excluded.stored_at, document = excluded.document",
                row,
            )
        return key

    def record_attempt(self, job_id: str, attempt: int, error: dict[str, Any]) -> None:
        """Keep the history of failed attempts (the retried ones do not reach the results table)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO attempts (job_id, attempt, at, error) VALUES (?, ?, ?, ?)",
                (job_id, attempt, _now(), json.dumps(error, sort_keys=True)),
            )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    # --- reading --------------------------------------------------------------------------------

    def rows(self, farm: str | None = None) -> list[dict[str, Any]]:
        """Summary rows (without documents), optionally for one farm."""
        columns = (
            "job_id, farm, status, device, model, variant, delegate, threads, p50_ms,"
            " error_kind, error_message, transient, attempts, stored_at"
        )
        query = f"SELECT {columns} FROM results" + (" WHERE farm = ?" if farm else "") + " ORDER BY stored_at"
        with self._lock:
            cursor = self._db.execute(query, (farm,) if farm else ())
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def status_by_job(self, farm: str | None = None) -> dict[str, dict[str, Any]]:
        return {row["job_id"]: row for row in self.rows(farm)}

    def documents(
        self, farm: str | None = None, statuses: Iterable[str] = ("ok", "failed", "skipped")
    ) -> Iterator[dict[str, Any]]:
        """Stored result documents, oldest first."""
        wanted = tuple(statuses)
        marks = ", ".join("?" for _ in wanted)
        query = f"SELECT document FROM results WHERE status IN ({marks})" + (" AND farm = ?" if farm else "")
        with self._lock:
            texts = [
                row[0] for row in self._db.execute(query + " ORDER BY stored_at", (*wanted, farm) if farm else wanted)
            ]
        for text in texts:
            yield json.loads(text)

    def attempts(self, job_id: str | None = None) -> list[dict[str, Any]]:
        query = (
            "SELECT job_id, attempt, at, error FROM attempts" + (" WHERE job_id = ?" if job_id else "") + " ORDER BY id"
        )
        with self._lock:
            rows = self._db.execute(query, (job_id,) if job_id else ()).fetchall()
        return [{"job_id": r[0], "attempt": r[1], "at": r[2], "error": json.loads(r[3])} for r in rows]

    def planned(self, farm: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT spec FROM jobs" + (" WHERE farm = ?" if farm else "") + " ORDER BY rowid"
        with self._lock:
            return [json.loads(r[0]) for r in self._db.execute(query, (farm,) if farm else ())]

    def farms(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT farm FROM jobs UNION SELECT DISTINCT farm FROM results").fetchall()
        return sorted(r[0] for r in rows if r[0])

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])


def needs_run(row: dict[str, Any] | None, retry_failed: bool = False) -> bool:
    """Whether a job must (re)run on resume: missing, skipped, transiently failed, or failed when asked."""
    if row is None:
        return True
    if row["status"] == "ok":
        return False
    if row["status"] == "skipped" or row["transient"]:
        return True
    return retry_failed


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the store's lock; ROLLBACK on any exception."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self.db = db
        self.lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


def open_store(path: str | Path, must_exist: bool = False) -> ResultStore:
    """Open (or create) a store; with must_exist, a missing file is a BadInputError."""
    path = Path(path)
    if must_exist and not path.exists():
        raise BadInputError(
            f"{path}: no such results store", "run `edgetk farm run FARM.yaml` first, or check the path"
        )
    return ResultStore(path)
