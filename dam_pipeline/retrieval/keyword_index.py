"""Keyword retrieval (BM25) over captions, tags, visible text, facts and file names.

Kept next to the vector index by the vector_index stage (same ids, same upserts and
deletions), so an exact word (a brand on a sign, a file name, a tag) is found even where the
embedding misses it. Two implementations with the same behaviour: SQLite FTS5 with the
Porter stemmer in the data directory, and Postgres full-text search (``DAM_STATE_URL``:
English stemming, a weight per field, ``websearch_to_tsquery`` and ``ts_rank_cd``).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dam_pipeline.sqlite_state import open_shared

if TYPE_CHECKING:
    from dam_pipeline.postgres import PostgresDatabase

_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS documents USING fts5(
    vector_id UNINDEXED, partition UNINDEXED, key, caption, tags, text, facts,
    tokenize = 'porter unicode61'
);
"""
# Column weights for bm25(): a tag or a word read off the image says more than a word in
# a long caption; the file name counts too.
_WEIGHTS = "0, 0, 1.5, 1.0, 2.0, 2.0, 0.5"


@dataclass(frozen=True)
class KeywordDocument:
    vector_id: str
    partition: str
    key: str
    caption: str
    tags: str = ""
    text: str = ""
    facts: str = ""


def fts_query(question: str) -> str:
    """The question as an FTS5 query: its words OR-ed, each quoted (no FTS syntax leaks in)."""
    return " OR ".join(f'"{word}"' for word in question_words(question))


def question_words(question: str) -> list[str]:
    """The question's distinct words, lower-cased: what a keyword search looks for."""
    return list(dict.fromkeys(re.findall(r"\w+", question.lower())))


class KeywordIndex(Protocol):
    """Also the index's commit record: a vector is shown only once its document is here
    (``retrieval.search``), and ``replace`` applies a partition's changes in one transaction,
    so readers see a partition's new state all at once."""

    def replace(self, documents: Sequence[KeywordDocument], removed: Sequence[str]) -> None:
        """Upsert ``documents`` and delete ``removed`` in one transaction."""
        ...

    def upsert(self, documents: Sequence[KeywordDocument]) -> None: ...

    def delete(self, ids: Sequence[str]) -> None: ...

    def search(
        self, question: str, limit: int, partitions: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """(vector id, score: higher is better) for documents sharing words with the
        question, best first."""
        ...

    def ids(self, partition: str) -> set[str]: ...

    def partitions_of(self, ids: Sequence[str]) -> dict[str, str]: ...

    def partitions(self) -> list[str]: ...

    def count(self) -> int: ...


class SqliteKeywordIndex:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connect().executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = open_shared(self.path)
            self._local.db = db
        return db

    def replace(self, documents: Sequence[KeywordDocument], removed: Sequence[str]) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN IMMEDIATE")
            self._delete(db, [*removed, *(d.vector_id for d in documents)])
            db.executemany(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (d.vector_id, d.partition, d.key, d.caption, d.tags, d.text, d.facts)
                    for d in documents
                ],
            )

    def upsert(self, documents: Sequence[KeywordDocument]) -> None:
        self.replace(documents, [])

    def delete(self, ids: Sequence[str]) -> None:
        self.replace([], ids)

    @staticmethod
    def _delete(db: sqlite3.Connection, ids: Sequence[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            db.execute(
                f"DELETE FROM documents WHERE vector_id IN ({','.join('?' * len(chunk))})", chunk
            )

    def search(
        self, question: str, limit: int, partitions: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """(vector id, BM25 score: higher is better) for documents sharing words with the
        question, best first."""
        query = fts_query(question)
        if not query:
            return []
        sql = (
            f"SELECT vector_id, -bm25(documents, {_WEIGHTS}) FROM documents WHERE documents MATCH ?"
        )
        args: list = [query]
        if partitions:
            sql += f" AND partition IN ({','.join('?' * len(partitions))})"
            args += list(partitions)
        sql += " ORDER BY bm25(documents, " + _WEIGHTS + ") LIMIT ?"
        return [(vid, float(score)) for vid, score in self._connect().execute(sql, [*args, limit])]

    def ids(self, partition: str) -> set[str]:
        rows = self._connect().execute(
            "SELECT vector_id FROM documents WHERE partition = ?", [partition]
        )
        return {vector_id for (vector_id,) in rows}

    def partitions_of(self, ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._connect().execute(
                "SELECT vector_id, partition FROM documents "
                f"WHERE vector_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update(rows)
        return found

    def partitions(self) -> list[str]:
        rows = self._connect().execute("SELECT DISTINCT partition FROM documents")
        return sorted(partition for (partition,) in rows)

    def count(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM documents").fetchone()[0]


# Weights per field, as ts_rank_cd's {D, C, B, A}: the same ratios as the FTS5 weights above
# (tags and visible text 2.0 -> A, file name 1.5 -> B, caption 1.0 -> C, facts 0.5 -> D).
PG_WEIGHTS = "{0.25, 0.5, 0.75, 1.0}"
_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS dam_keywords (
    vector_id TEXT PRIMARY KEY,
    partition TEXT NOT NULL,
    key TEXT NOT NULL,
    caption TEXT NOT NULL,
    tags TEXT NOT NULL,
    text TEXT NOT NULL,
    facts TEXT NOT NULL,
    document TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('english', tags || ' ' || text), 'A')
        || setweight(to_tsvector('english', regexp_replace(key, '[^[:alnum:]]+', ' ', 'g')), 'B')
        || setweight(to_tsvector('english', caption), 'C')
        || setweight(to_tsvector('english', facts), 'D')
    ) STORED
);
CREATE INDEX IF NOT EXISTS dam_keywords_document ON dam_keywords USING gin (document);
CREATE INDEX IF NOT EXISTS dam_keywords_partition ON dam_keywords (partition);
"""


def pg_query_text(question: str) -> str:
    """The question for ``websearch_to_tsquery``: its words OR-ed (as FTS5 does here), with
    nothing of websearch's syntax (quotes, minus signs) let through."""
    words = [word for word in question_words(question) if word not in ("or", "and")]
    return " or ".join(words)


class PostgresKeywordIndex:
    """The keyword index as a Postgres table with a weighted ``tsvector`` per document."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        db.ensure_schema("keywords", _PG_SCHEMA)

    def replace(self, documents: Sequence[KeywordDocument], removed: Sequence[str]) -> None:
        rows = {
            d.vector_id: (d.vector_id, d.partition, d.key, d.caption, d.tags, d.text, d.facts)
            for d in documents
        }
        if not rows and not removed:
            return
        with self.db.transaction() as cursor:
            if removed:
                cursor.execute(
                    "DELETE FROM dam_keywords WHERE vector_id = ANY(%s)", (list(removed),)
                )
            if rows:
                cursor.executemany(
                    "INSERT INTO dam_keywords "
                    "(vector_id, partition, key, caption, tags, text, facts) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (vector_id) DO UPDATE SET "
                    "partition = EXCLUDED.partition, key = EXCLUDED.key, "
                    "caption = EXCLUDED.caption, tags = EXCLUDED.tags, text = EXCLUDED.text, "
                    "facts = EXCLUDED.facts",
                    list(rows.values()),
                )

    def upsert(self, documents: Sequence[KeywordDocument]) -> None:
        self.replace(documents, [])

    def delete(self, ids: Sequence[str]) -> None:
        self.replace([], ids)

    def search(
        self, question: str, limit: int, partitions: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        text = pg_query_text(question)
        if not text:
            return []
        sql, args = self.ranked_sql(text, limit, partitions)
        with self.db.cursor() as cursor:
            cursor.execute(sql, args)
            return [(vector_id, float(score)) for vector_id, score in cursor]

    @staticmethod
    def ranked_sql(text: str, limit: int, partitions: Sequence[str] | None) -> tuple[str, list]:
        """The ranked keyword query (also a part of the pgvector store's one-query hybrid)."""
        sql = (
            f"SELECT vector_id, ts_rank_cd('{PG_WEIGHTS}', document, query) AS score "
            "FROM dam_keywords, websearch_to_tsquery('english', %s) AS query "
            "WHERE document @@ query"
        )
        args: list = [text]
        if partitions:
            sql += " AND partition = ANY(%s)"
            args.append(list(partitions))
        sql += " ORDER BY score DESC, vector_id LIMIT %s"
        return sql, [*args, limit]

    def ids(self, partition: str) -> set[str]:
        with self.db.cursor() as cursor:
            cursor.execute("SELECT vector_id FROM dam_keywords WHERE partition = %s", (partition,))
            return {vector_id for (vector_id,) in cursor}

    def partitions_of(self, ids: Sequence[str]) -> dict[str, str]:
        with self.db.cursor() as cursor:
            cursor.execute(
                "SELECT vector_id, partition FROM dam_keywords WHERE vector_id = ANY(%s)",
                (list(ids),),
            )
            return dict(cursor.fetchall())

    def partitions(self) -> list[str]:
        with self.db.cursor() as cursor:
            cursor.execute("SELECT DISTINCT partition FROM dam_keywords ORDER BY partition")
            return [partition for (partition,) in cursor]

    def count(self) -> int:
        with self.db.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM dam_keywords")
            return cursor.fetchone()[0]
