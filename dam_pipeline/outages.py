"""Which provider endpoints are known to be down, shared by every run.

A run's circuit breaker (``dam_pipeline.retry.CircuitBreaker``) that opens posts the outage
here, until when and why; every other run that calls the same endpoint reads it before
sending and stops too, instead of paying its own few failures to learn the same thing. It
lives beside the shared request rate: SQLite in the data directory (the runs of one
machine), or Postgres in the shared profile (every machine, on the server's clock).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dam_pipeline.postgres import database
from dam_pipeline.sqlite_state import thread_connection


class OutageBoard(Protocol):
    def current(self, name: str) -> tuple[float, str] | None:
        """The seconds left of the outage posted for endpoint ``name`` and its reason."""
        ...

    def post(self, name: str, seconds: float, reason: str) -> None:
        """Endpoint ``name`` is down: nobody sends to it for ``seconds``."""
        ...

    def clear(self, name: str) -> None:
        """Endpoint ``name`` answered again."""
        ...


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS outages (
    name TEXT PRIMARY KEY,
    until REAL NOT NULL,
    reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class SqliteOutageBoard:
    path: Path
    _local: threading.local = field(
        default_factory=threading.local, compare=False, hash=False, repr=False
    )

    def _connect(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, _SQLITE_SCHEMA, timeout=30)

    def current(self, name: str) -> tuple[float, str] | None:
        row = (
            self._connect()
            .execute("SELECT until, reason FROM outages WHERE name = ?", (name,))
            .fetchone()
        )
        if row is None or row[0] <= time.time():
            return None
        return row[0] - time.time(), row[1]

    def post(self, name: str, seconds: float, reason: str) -> None:
        self._connect().execute(
            "INSERT OR REPLACE INTO outages VALUES (?, ?, ?)", (name, time.time() + seconds, reason)
        )

    def clear(self, name: str) -> None:
        self._connect().execute("DELETE FROM outages WHERE name = ?", (name,))


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS dam_outages (
    name text PRIMARY KEY,
    until double precision NOT NULL,
    reason text NOT NULL
);
"""
_PG_NOW = "extract(epoch FROM clock_timestamp())"


@dataclass(frozen=True)
class PostgresOutageBoard:
    url: str

    def _database(self):
        db = database(self.url)
        db.ensure_schema("outages", _PG_SCHEMA)
        return db

    def current(self, name: str) -> tuple[float, str] | None:
        with self._database().cursor() as cursor:
            cursor.execute(
                f"SELECT until - {_PG_NOW}, reason FROM dam_outages "
                f"WHERE name = %s AND until > {_PG_NOW}",
                (name,),
            )
            row = cursor.fetchone()
        return (float(row[0]), row[1]) if row else None

    def post(self, name: str, seconds: float, reason: str) -> None:
        with self._database().cursor() as cursor:
            cursor.execute(
                f"INSERT INTO dam_outages VALUES (%(name)s, {_PG_NOW} + %(seconds)s, %(reason)s) "
                "ON CONFLICT (name) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason",
                {"name": name, "seconds": seconds, "reason": reason},
            )

    def clear(self, name: str) -> None:
        with self._database().cursor() as cursor:
            cursor.execute("DELETE FROM dam_outages WHERE name = %s", (name,))
