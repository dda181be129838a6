"""SQLite files of the data directory that several threads and processes share."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


def open_shared(path: Path, timeout: float = 60) -> sqlite3.Connection:
    """An autocommit connection to ``path`` in WAL mode, so readers never wait for a writer.

    Switching a new file to WAL takes an exclusive lock and SQLite may answer "database is
    locked" at once, without its busy handler, while another connection opens the same new
    file; the mode is persistent, so it is set only when the file is not in WAL yet, and
    retried until ``timeout``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.02)


def thread_connection(
    local: threading.local, path: Path, schema: str, timeout: float = 60
) -> sqlite3.Connection:
    """This thread's shared-mode connection to ``path``, opened once per thread with
    ``schema`` created."""
    db = getattr(local, "db", None)
    if db is None:
        db = open_shared(path, timeout)
        db.executescript(schema)
        local.db = db
    return db
