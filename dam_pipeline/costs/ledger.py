"""The spend ledger: one row per (run or question, partition, stage, provider/model), kept
with the pipeline's state (SQLite in the data directory, or Postgres in the shared
profile), so `dam cost` reports what every run and question spent, on any machine.

Rows hold what the provider reported and the cost at the price in force when recorded (a
later price change does not rewrite history).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dam_pipeline.costs.prices import PriceTable
from dam_pipeline.costs.usage import Usage, Usages

if TYPE_CHECKING:
    from dam_pipeline.postgres import PostgresDatabase


@dataclass(frozen=True)
class SpendRow:
    recorded_at: float
    run_id: str
    partition: str
    stage: str
    model_id: str
    usage: Usage
    cost_usd: float

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.recorded_at, UTC).date().isoformat()


class SpendLedger(Protocol):
    def record(self, rows: list[SpendRow]) -> None: ...

    def rows(self) -> list[SpendRow]: ...


def spend_rows(
    usages: Usages, prices: PriceTable, run_id: str, partition: str, stage: str
) -> list[SpendRow]:
    now = time.time()
    return [
        SpendRow(now, run_id, partition, stage, model_id, usage, prices.cost(model_id, usage))
        for model_id, usage in sorted(usages.items())
    ]


_SQLITE = """
CREATE TABLE IF NOT EXISTS spend (
    recorded_at REAL NOT NULL, run_id TEXT NOT NULL, partition TEXT NOT NULL,
    stage TEXT NOT NULL, model_id TEXT NOT NULL, requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, images INTEGER NOT NULL,
    cost_usd REAL NOT NULL, unknown_cost INTEGER NOT NULL DEFAULT 0
);
"""
_INSERT = (
    "INSERT INTO {table} (recorded_at, run_id, partition, stage, model_id, requests, "
    "input_tokens, output_tokens, images, cost_usd, unknown_cost) VALUES ({marks})"
)
_SELECT = (
    "SELECT recorded_at, run_id, partition, stage, model_id, requests, input_tokens, "
    "output_tokens, images, cost_usd, unknown_cost FROM {table} ORDER BY recorded_at"
)


def _values(row: SpendRow) -> tuple:
    u = row.usage
    return (
        row.recorded_at, row.run_id, row.partition, row.stage, row.model_id,
        u.requests, u.input_tokens, u.output_tokens, u.images, row.cost_usd, u.unknown_cost,
    )  # fmt: skip


def _row(values: tuple) -> SpendRow:
    at, run_id, partition, stage, model_id, requests, tin, tout, images, cost, unknown = values
    usage = Usage(int(requests), int(tin), int(tout), int(images), int(unknown))
    return SpendRow(float(at), run_id, partition, stage, model_id, usage, float(cost))


_SQLITE_ADD_UNKNOWN = "ALTER TABLE spend ADD COLUMN unknown_cost INTEGER NOT NULL DEFAULT 0"


class SqliteSpendLedger:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        try:
            connection.execute(_SQLITE)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(spend)")}
            if "unknown_cost" not in columns:  # a ledger written before the column existed
                connection.execute(_SQLITE_ADD_UNKNOWN)
            yield connection
            connection.commit()
        finally:
            connection.close()

    def record(self, rows: list[SpendRow]) -> None:
        if not rows:
            return
        with self._lock, self._connect() as connection:
            sql = _INSERT.format(table="spend", marks=", ".join("?" * 11))
            connection.executemany(sql, [_values(r) for r in rows])

    def rows(self) -> list[SpendRow]:
        if not self.path.exists():
            return []
        with self._connect() as connection:
            return [_row(v) for v in connection.execute(_SELECT.format(table="spend"))]


_POSTGRES = """
CREATE TABLE IF NOT EXISTS dam_spend (
    recorded_at DOUBLE PRECISION NOT NULL, run_id TEXT NOT NULL, partition TEXT NOT NULL,
    stage TEXT NOT NULL, model_id TEXT NOT NULL, requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, images BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL
);
ALTER TABLE dam_spend ADD COLUMN IF NOT EXISTS unknown_cost BIGINT NOT NULL DEFAULT 0;
"""


class PostgresSpendLedger:
    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        db.ensure_schema("spend", _POSTGRES)

    def record(self, rows: list[SpendRow]) -> None:
        if not rows:
            return
        with self.db.cursor() as cursor:
            sql = _INSERT.format(table="dam_spend", marks=", ".join(["%s"] * 11))
            cursor.executemany(sql, [_values(r) for r in rows])

    def rows(self) -> list[SpendRow]:
        with self.db.cursor() as cursor:
            cursor.execute(_SELECT.format(table="dam_spend"))
            return [_row(v) for v in cursor.fetchall()]


def report(rows: list[SpendRow]) -> dict:
    """Totals at the top level, and the same by provider/model, partition, stage and day."""

    def totals(selected: list[SpendRow]) -> dict:
        usage = sum((r.usage for r in selected), Usage())
        return {**usage.to_dict(), "cost_usd": round(sum(r.cost_usd for r in selected), 6)}

    def grouped(key) -> dict[str, dict]:
        groups: dict[str, list[SpendRow]] = {}
        for row in rows:
            groups.setdefault(key(row), []).append(row)
        return {name: totals(members) for name, members in sorted(groups.items())}

    return {
        **totals(rows),
        "by_model": grouped(lambda r: r.model_id),
        "by_partition": grouped(lambda r: r.partition or "(questions)"),
        "by_stage": grouped(lambda r: r.stage),
        "by_day": grouped(lambda r: r.day),
    }
