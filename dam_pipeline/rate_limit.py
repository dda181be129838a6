"""One request rate for every process that calls a provider with the same key.

Each run retrying on its own would let four runs send four times what the key allows and
then spend the difference in 429s. Instead, every request first takes the next free *slot*
of a schedule kept in shared state: slots are ``60 / requests_per_minute`` seconds apart, so
all callers together send at most the configured rate, evenly, whatever their number. When
the provider still answers 429, ``hold_off`` moves the schedule past its Retry-After for
every caller, not only the one that was told.

The schedule is one row: the time of the next free slot, and until when the provider asked
everyone to wait. Taking a slot is one atomic statement; Postgres (shared profile) answers
with its own clock, so machines whose clocks differ still agree. SQLite (embedded profile)
serves the processes of one machine.
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


class RateLimiter(Protocol):
    def acquire(self) -> float:
        """Wait for this caller's turn to send one request; returns the seconds waited."""
        ...

    def hold_off(self, seconds: float) -> None:
        """The provider asked to wait ``seconds``: nobody sharing this limit sends sooner."""
        ...


def _interval(requests_per_minute: float) -> float:
    return 60.0 / requests_per_minute if requests_per_minute > 0 else 0.0


def _sleep_until_turn(wait: float) -> float:
    if wait > 0:
        time.sleep(wait)
    return max(0.0, wait)


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_limits (
    name TEXT PRIMARY KEY,
    next_free REAL NOT NULL,
    paused_until REAL NOT NULL
);
"""


@dataclass(frozen=True)
class SqliteRateLimiter:
    """The schedule in a SQLite file of the data directory: the runs of one machine."""

    path: Path
    name: str
    requests_per_minute: float = 0.0
    _local: threading.local = field(
        default_factory=threading.local, compare=False, hash=False, repr=False
    )

    def _connect(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, _SQLITE_SCHEMA)

    def _take(self, interval: float, pause: float) -> float:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")  # one writer at a time: the slot is ours alone
        try:
            now = time.time()
            row = db.execute(
                "SELECT next_free, paused_until FROM rate_limits WHERE name = ?", (self.name,)
            ).fetchone()
            next_free, paused_until = row if row else (now, now)
            if pause:
                paused_until = max(paused_until, now + pause)
                slot = now
            else:
                slot = max(next_free, paused_until, now)
                next_free = slot + interval
            db.execute(
                "INSERT OR REPLACE INTO rate_limits VALUES (?, ?, ?)",
                (self.name, next_free, paused_until),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return slot - now

    def acquire(self) -> float:
        return _sleep_until_turn(self._take(_interval(self.requests_per_minute), 0.0))

    def hold_off(self, seconds: float) -> None:
        self._take(0.0, max(seconds, 1e-3))


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS dam_rate_limits (
    name text PRIMARY KEY,
    next_free double precision NOT NULL,
    paused_until double precision NOT NULL
);
"""

# Both statements read the clock of the server, the one clock every machine shares.
_PG_ACQUIRE = """
INSERT INTO dam_rate_limits AS r (name, next_free, paused_until)
VALUES (%(name)s, extract(epoch FROM clock_timestamp()) + %(interval)s, 0)
ON CONFLICT (name) DO UPDATE SET next_free =
    GREATEST(r.next_free, r.paused_until, extract(epoch FROM clock_timestamp())) + %(interval)s
RETURNING next_free - %(interval)s - extract(epoch FROM clock_timestamp())
"""
_PG_HOLD_OFF = """
INSERT INTO dam_rate_limits AS r (name, next_free, paused_until)
VALUES (%(name)s, 0, extract(epoch FROM clock_timestamp()) + %(seconds)s)
ON CONFLICT (name) DO UPDATE SET paused_until =
    GREATEST(r.paused_until, extract(epoch FROM clock_timestamp()) + %(seconds)s)
"""


@dataclass(frozen=True)
class PostgresRateLimiter:
    """The schedule in the shared database: every run on every machine."""

    url: str
    name: str
    requests_per_minute: float = 0.0

    def _database(self):
        db = database(self.url)
        db.ensure_schema("rate_limits", _PG_SCHEMA)
        return db

    def acquire(self) -> float:
        interval = _interval(self.requests_per_minute)
        with self._database().cursor() as cursor:
            cursor.execute(_PG_ACQUIRE, {"name": self.name, "interval": interval})
            (wait,) = cursor.fetchone()
        return _sleep_until_turn(float(wait))

    def hold_off(self, seconds: float) -> None:
        with self._database().cursor() as cursor:
            cursor.execute(_PG_HOLD_OFF, {"name": self.name, "seconds": max(seconds, 1e-3)})
