"""SQLite files of the data directory that several threads and processes share."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


def thread_connection(
    local: threading.local, path: Path, schema: str, timeout: float = 60
) -> sqlite3.Connection:
    """This thread's autocommit connection to ``path`` (WAL, so readers never wait for a
    writer), opened once per thread with ``schema`` created."""
    db = getattr(local, "db", None)
    if db is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
        local.db = db
    return db
