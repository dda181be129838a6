"""One Postgres database shared by every worker of the shared profile (``DAM_STATE_URL``).

Each process keeps one connection per thread (psycopg 3; a connection serves one
thread at a time), in autocommit mode: each statement commits on its own unless
a caller opens a ``transaction()``. Tables are created on first use, under an advisory lock
so that workers starting together do not race on the catalog.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_SCHEMA_LOCK = 0x64616D  # pg_advisory_xact_lock key: "dam"


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresDatabase:
    """Connections to one database, and its schema created once per process."""

    def __init__(self, url: str, setting: str = "DAM_STATE_URL") -> None:
        from dam_pipeline.text import register_secret

        self.url = url
        self.setting = setting
        register_secret(urlsplit(url).password)
        self._local = threading.local()
        self._schemas_done: set[str] = set()
        self._lock = threading.Lock()

    def connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            import psycopg

            try:
                conn = psycopg.connect(self.url, connect_timeout=10, autocommit=True)
            except psycopg.OperationalError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
                raise ConnectionError(
                    f"Could not reach Postgres at {redacted(self.url)} ({reason}): start it or "
                    f"fix {self.setting}."
                ) from None
            self._local.conn = conn
        return conn

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        with self.connection().cursor() as cursor:
            yield cursor

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside BEGIN … COMMIT (ROLLBACK if the block raises)."""
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cursor:
            yield cursor

    def ensure_schema(self, name: str, ddl: str) -> None:
        """Run ``ddl`` (idempotent statements) once per process, serialized across workers."""
        if name in self._schemas_done:
            return
        with self._lock:
            if name in self._schemas_done:
                return
            with self.transaction() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                cursor.execute(ddl)
            self._schemas_done.add(name)

    def forget_schema(self, name: str) -> None:
        """After dropping a table: create it again on next use."""
        self._schemas_done.discard(name)


_DATABASES: dict[tuple[str, str], PostgresDatabase] = {}


def database(url: str, setting: str = "DAM_STATE_URL") -> PostgresDatabase:
    """The process-wide handle on ``url`` (its connections are per thread)."""
    key = (url, setting)
    if key not in _DATABASES:
        _DATABASES[key] = PostgresDatabase(url, setting)
    return _DATABASES[key]
