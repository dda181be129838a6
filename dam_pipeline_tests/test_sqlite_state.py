"""Several threads opening one new state file at once all get a WAL connection."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dam_pipeline.sqlite_state import thread_connection

_SCHEMA = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER);"


def test_threads_opening_a_new_file_together_all_get_wal(tmp_path: Path) -> None:
    for attempt in range(20):
        path = tmp_path / f"state-{attempt}.sqlite"
        start = threading.Barrier(6)

        def open_and_write(n: int, path: Path = path, start: threading.Barrier = start) -> str:
            local = threading.local()
            start.wait()
            db = thread_connection(local, path, _SCHEMA)
            db.execute("INSERT INTO t VALUES (?, ?)", (str(n), n))
            return db.execute("PRAGMA journal_mode").fetchone()[0]

        with ThreadPoolExecutor(6) as pool:
            modes = list(pool.map(open_and_write, range(6)))
        assert modes == ["wal"] * 6
        assert (
            thread_connection(threading.local(), path, _SCHEMA)
            .execute("SELECT count(*) FROM t")
            .fetchone()[0]
            == 6
        )
