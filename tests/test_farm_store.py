"""Opening a store while another connection holds the file: the farm's processes share one store."""

from __future__ import annotations

import sqlite3
import threading

from toolkit.store import ResultStore


def test_a_store_opens_while_another_connection_briefly_holds_the_file(tmp_path):
    """Switching a new file to WAL needs it alone; SQLite says "database is locked" at once
    instead of waiting (two processes opening one new store together failed that way)."""
    path = tmp_path / "r.db"
    other = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")  # another writer, as when two processes open a new store together
    release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
    release.start()
    try:
        with ResultStore(path) as store:
            assert store.count() == 0
            assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        other.close()
