"""pgvector: the vector index as a Postgres table, shared by every machine.

One row per object (the deterministic vector id is the primary key, so an upsert replaces
and a killed writer leaves nothing twice), an HNSW index for cosine distance, partitions and
dates as columns so filters run in SQL. The table is created when the index is bound to an
embedder (the dimension is fixed then). When the keyword index lives in the same database,
``hybrid_query`` ranks by meaning and by words and fuses both rankings in one SQL query.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np

from dam_pipeline.postgres import PostgresDatabase, database
from dam_pipeline.vector_stores.base import (
    IncompatibleIndexError,
    Metadata,
    StoreFilter,
    VectorHit,
    VectorRecord,
    reindex_hint,
)

EXACT_SEARCH_ROWS = 20_000
"""A filter that leaves at most this many rows is searched exactly (a scan of the matching
rows through the partition index, a few ms), not through HNSW: pgvector 0.6 filters after
the graph search and a narrow filter would starve the results."""
EF_SEARCH = 100
_BINDINGS = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS dam_vector_bindings (
    collection TEXT PRIMARY KEY, embedder TEXT NOT NULL, dimension INTEGER NOT NULL
);
"""


def _literal(vector: np.ndarray) -> str:
    """A vector in pgvector's text form."""
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32)) + "]"


class PgVectorStore:
    def __init__(self, url: str, collection: str = "dam_images") -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", collection):
            raise ValueError(
                f"DAM_COLLECTION={collection!r} cannot name a pgvector table: use letters, "
                "digits and underscores."
            )
        self.db: PostgresDatabase = database(url, "DAM_PGVECTOR_URL")
        self.collection = collection
        self.table = f"dam_vectors_{collection.lower()}"
        self.location = f"pgvector:{self.table}"
        self.db.ensure_schema("vector_bindings", _BINDINGS)

    def shares_database_with(self, keywords: object) -> bool:
        """Whether the keyword index is in this database (hybrid search in one query)."""
        return getattr(getattr(keywords, "db", None), "url", None) == self.db.url

    # The model binding

    def binding(self) -> tuple[str, int] | None:
        with self.db.cursor() as cursor:
            cursor.execute(
                "SELECT embedder, dimension FROM dam_vector_bindings WHERE collection = %s",
                (self.collection,),
            )
            row = cursor.fetchone()
        return (row[0], int(row[1])) if row else None

    def ensure_compatible(self, embedder: str, dimension: int) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO dam_vector_bindings VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (self.collection, embedder, dimension),
            )
            cursor.execute(
                "SELECT embedder, dimension FROM dam_vector_bindings WHERE collection = %s",
                (self.collection,),
            )
            built_with, built_dim = cursor.fetchone()
        if built_with != embedder or int(built_dim) != dimension:
            raise IncompatibleIndexError(
                reindex_hint(built_with, int(built_dim), embedder, dimension)
            )
        self._ensure_table(dimension)

    def _ensure_table(self, dimension: int) -> None:
        t = self.table
        self.db.ensure_schema(
            t,
            f"""
            CREATE TABLE IF NOT EXISTS {t} (
                id TEXT PRIMARY KEY,
                partition TEXT NOT NULL,
                date_ts BIGINT,
                document TEXT NOT NULL,
                metadata JSONB NOT NULL,
                embedding vector({int(dimension)}) NOT NULL
            );
            CREATE INDEX IF NOT EXISTS {t}_partition ON {t} (partition);
            CREATE INDEX IF NOT EXISTS {t}_date ON {t} (date_ts);
            CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops);
            """,
        )

    def _exists(self) -> bool:
        with self.db.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (self.table,))
            return bool(cursor.fetchone()[0])

    # Writes

    def upsert(self, records: Sequence[VectorRecord]) -> None:
        if not records:
            return
        rows = {
            r.id: (
                r.id,
                str(r.metadata.get("partition", "")),
                r.metadata.get("date_ts"),
                r.document,
                json.dumps(r.metadata),
                _literal(r.vector),
            )
            for r in records
        }
        with self.db.transaction() as cursor:
            cursor.executemany(
                f"INSERT INTO {self.table} (id, partition, date_ts, document, metadata, embedding) "
                "VALUES (%s, %s, %s, %s, %s::jsonb, %s::vector) ON CONFLICT (id) DO UPDATE SET "
                "partition = EXCLUDED.partition, date_ts = EXCLUDED.date_ts, "
                "document = EXCLUDED.document, metadata = EXCLUDED.metadata, "
                "embedding = EXCLUDED.embedding",
                list(rows.values()),
            )

    def delete(self, ids: Sequence[str], partition: str = "") -> None:
        if ids and self._exists():
            with self.db.cursor() as cursor:
                cursor.execute(f"DELETE FROM {self.table} WHERE id = ANY(%s)", (list(ids),))

    def reset(self) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.table}")
            cursor.execute(
                "DELETE FROM dam_vector_bindings WHERE collection = %s", (self.collection,)
            )
        self.db.forget_schema(self.table)

    # Reads

    def list_partition(self, partition: str) -> dict[str, Metadata]:
        if not self._exists():
            return {}
        with self.db.cursor() as cursor:
            cursor.execute(
                f"SELECT id, metadata FROM {self.table} WHERE partition = %s", (partition,)
            )
            return dict(cursor.fetchall())

    def count(self) -> int:
        if not self._exists():
            return 0
        with self.db.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {self.table}")
            return int(cursor.fetchone()[0])

    def fetch(
        self, items: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[np.ndarray, Metadata, str]]:
        if not items or not self._exists():
            return {}
        with self.db.cursor() as cursor:
            cursor.execute(
                f"SELECT id, embedding::text, metadata, document FROM {self.table} "
                "WHERE id = ANY(%s)",
                (list(dict.fromkeys(vector_id for vector_id, _ in items)),),
            )
            return {
                id_: (np.asarray(json.loads(vector), dtype=np.float32), meta, doc)
                for id_, vector, meta, doc in cursor
            }

    @staticmethod
    def _where(where: StoreFilter | None) -> tuple[str, list]:
        clauses, args = [], []
        if where is not None and where.partitions:
            clauses.append("partition = ANY(%s)")
            args.append(list(where.partitions))
        if where is not None and where.date_from is not None:
            clauses.append("date_ts >= %s")
            args.append(where.date_from)
        if where is not None and where.date_to is not None:
            clauses.append("date_ts <= %s")
            args.append(where.date_to)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def _plan(self, cursor, where: StoreFilter | None, top_k: int) -> None:
        """Inside a transaction: exact search for a narrow filter, else HNSW with a search
        list long enough for ``top_k``."""
        condition, args = self._where(where)
        if condition:
            cursor.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {self.table}{condition} LIMIT %s) AS m",
                [*args, EXACT_SEARCH_ROWS + 1],
            )
            if cursor.fetchone()[0] <= EXACT_SEARCH_ROWS:
                cursor.execute("SET LOCAL enable_indexscan = off")
                return
        cursor.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, min(1000, top_k))}")

    def query(
        self, vector: np.ndarray, top_k: int, where: StoreFilter | None = None
    ) -> list[VectorHit]:
        if top_k <= 0 or not self._exists():
            return []
        condition, args = self._where(where)
        literal = _literal(vector)
        with self.db.transaction() as cursor:
            self._plan(cursor, where, top_k)
            cursor.execute(
                f"SELECT id, 1 - (embedding <=> %s::vector), document, metadata "
                f"FROM {self.table}{condition} ORDER BY embedding <=> %s::vector LIMIT %s",
                [literal, *args, literal, top_k],
            )
            rows = cursor.fetchall()
        return [
            VectorHit(id=id_, score=float(score), document=doc, metadata=meta)
            for id_, score, doc, meta in rows
        ]

    def hybrid_query(
        self,
        vector: np.ndarray,
        keyword_text: str,
        pool: int,
        where: StoreFilter | None,
        keyword_weight: float,
        rrf_k: int,
    ) -> list[tuple[VectorHit, bool, float | None]]:
        """Both rankings and their reciprocal-rank fusion in one query: (hit with its cosine
        score, found by meaning, keyword score or None), best fused first."""
        from dam_pipeline.retrieval.keyword_index import PostgresKeywordIndex

        if not self._exists():
            return []
        condition, args = self._where(where)
        literal = _literal(vector)
        partitions = list(where.partitions) if where is not None and where.partitions else None
        keyword_sql, keyword_args = (
            PostgresKeywordIndex.ranked_sql(keyword_text, pool, partitions)
            if keyword_text
            else ("SELECT NULL::text AS vector_id, NULL::real AS score LIMIT 0", [])
        )
        sql = f"""
            WITH dense AS (
                SELECT id, row_number() OVER (ORDER BY distance, id) AS rank FROM (
                    SELECT id, embedding <=> %s::vector AS distance FROM {self.table}{condition}
                    ORDER BY distance LIMIT %s
                ) AS nearest
            ),
            lexical AS (
                SELECT vector_id AS id, score,
                       row_number() OVER (ORDER BY score DESC, vector_id) AS rank
                FROM ({keyword_sql}) AS ranked
            ),
            fused AS (
                SELECT coalesce(d.id, l.id) AS id, d.rank AS dense_rank, l.score AS lexical,
                       coalesce(1.0 / (%s + d.rank), 0) + %s * coalesce(1.0 / (%s + l.rank), 0)
                           AS rrf,
                       coalesce(d.rank, 1e9) AS tie_dense, coalesce(l.rank, 1e9) AS tie_lexical
                FROM dense AS d FULL OUTER JOIN lexical AS l ON d.id = l.id
            )
            SELECT f.id, 1 - (t.embedding <=> %s::vector), t.document, t.metadata,
                   f.dense_rank IS NOT NULL, f.lexical
            FROM fused AS f JOIN {self.table} AS t ON t.id = f.id
            ORDER BY f.rrf DESC, f.tie_dense, f.tie_lexical
        """
        with self.db.transaction() as cursor:
            self._plan(cursor, where, pool)
            cursor.execute(
                sql,
                [
                    literal,
                    *args,
                    pool,
                    *keyword_args,
                    rrf_k,
                    keyword_weight,
                    rrf_k,
                    literal,
                ],
            )
            rows = cursor.fetchall()
        return [
            (
                VectorHit(id=id_, score=float(score), document=doc, metadata=meta),
                bool(by_meaning),
                None if lexical is None else float(lexical),
            )
            for id_, score, doc, meta, by_meaning, lexical in rows
        ]
