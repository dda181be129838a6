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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from dam_pipeline.postgres import PostgresDatabase, database
from dam_pipeline.vector_stores.base import (
    PLACE_FIELDS,
    IncompatibleIndexError,
    Metadata,
    StoreFilter,
    VectorHit,
    VectorRecord,
    bounding_box,
    reindex_hint,
)

EXACT_SEARCH_ROWS = 20_000
"""A filter that leaves at most this many rows is searched exactly (a scan of the matching
rows through the partition index, a few ms), not through HNSW: pgvector 0.6 filters after
the graph search and a narrow filter would starve the results."""
EF_SEARCH = 200
"""The HNSW search list: recall@10 about 0.97 at 1M clustered vectors (0.82 at 40), p95
under 10 ms (``../shared/anchors``)."""
FILTERED_EF_SEARCH = 400
"""The search list under a broad filter (a tenth of the rows or more), with iterative scans
(the anchor: 0.95-0.97 at 3-10% selectivity with 200-800)."""
MAX_EF_SEARCH = 1000
"""pgvector's largest search list."""
BROAD_SHARE = 0.10
"""A filter keeping less than this share of the rows gets a longer search list, in
proportion (3% of 1M rows: 400 gave recall 0.94, ``bench.scale``): the graph's candidates
pass the filter that much more rarely."""
COUNT_CAP = 200_000
"""How far the filter's rows are counted to choose the plan (an index-only count)."""
BULK_ROWS = 500
"""An upsert of at least this many rows goes through COPY into a staging table and one
merge (about 100× the rows a second of row-by-row upserts); fewer rows are upserted as they
are."""
REBUILD_SHARE = 0.25
"""A bulk upsert that adds at least this share of the table's rows (a first load, a big
backfill) drops the HNSW index and builds it again after the rows are in: building the
graph once costs about a quarter of inserting the same rows into it one by one."""
BUILD_BYTES_PER_ROW_OVERHEAD = 1024
"""An HNSW graph in memory holds each vector plus its neighbour lists (2·m candidates on the
bottom layer, 16 bytes each) and an element header: about ``4·dim + 1 KB`` per row."""
BUILD_MEMORY_CAP_MB = 8192
"""The most ``maintenance_work_mem`` an index build asks for (the anchor's setting): Postgres
takes only what the graph needs, up to this."""


def build_memory_mb(rows: int, dimension: int) -> int:
    """``maintenance_work_mem`` for building the graph of ``rows`` vectors in one pass: a
    graph that does not fit is built far more slowly (pgvector then inserts the rest one by
    one). 1M 384-d vectors: about 3.3 GB."""
    need = rows * (4 * dimension + BUILD_BYTES_PER_ROW_OVERHEAD) * 1.3 / 2**20
    return int(min(BUILD_MEMORY_CAP_MB, max(64, need)))


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
    upsert_batch = 10_000  # COPY and one merge per call (``BULK_ROWS``)

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
        self._pgvector_version: tuple[int, ...] | None = None
        self._deferring = False
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
        latest = {r.id: r for r in records}  # one row per id: the last one given
        if len(latest) >= BULK_ROWS:
            self._bulk_upsert(list(latest.values()))
            return
        rows = [
            (
                r.id,
                str(r.metadata.get("partition", "")),
                r.metadata.get("date_ts"),
                r.document,
                json.dumps(r.metadata),
                _literal(r.vector),
            )
            for r in latest.values()
        ]
        with self.db.transaction() as cursor:
            cursor.executemany(
                f"INSERT INTO {self.table} (id, partition, date_ts, document, metadata, embedding) "
                "VALUES (%s, %s, %s, %s, %s::jsonb, %s::vector) ON CONFLICT (id) DO UPDATE SET "
                "partition = EXCLUDED.partition, date_ts = EXCLUDED.date_ts, "
                "document = EXCLUDED.document, metadata = EXCLUDED.metadata, "
                "embedding = EXCLUDED.embedding",
                rows,
            )
        if not self._deferring:
            self._ensure_index()

    @contextmanager
    def batch_writes(self) -> Iterator[None]:
        """A run's writes: once a bulk upsert has dropped the HNSW index (a large load), the
        following ones go in without it, and it is built once at the end (or by the next
        writer, if this one is killed first). Searches meanwhile are exact."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        self._ensure_index()

    _COLUMNS = "id, partition, date_ts, document, metadata, embedding"

    def _bulk_upsert(self, records: list[VectorRecord]) -> None:
        """Binary COPY into a staging table (vectors as float4 arrays: no text formatting)
        and one merge, in one transaction: a writer killed at any point leaves the table as
        it was or with every row, each id once. A large batch builds the HNSW index after
        its rows are in (``REBUILD_SHARE``)."""
        t = self.table
        with self.db.transaction() as cursor:
            # one bulk writer at a time (readers go on): two of them dropping the index
            # would deadlock each other
            cursor.execute(f"LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE")
            cursor.execute(f"SELECT count(*), to_regclass(%s) IS NULL FROM {t}", (f"{t}_hnsw",))
            present, missing = cursor.fetchone()
            rebuild = missing or len(records) >= REBUILD_SHARE * int(present)
            cursor.execute(
                f"CREATE TEMP TABLE {t}_staging (id text, partition text, date_ts bigint, "
                "document text, metadata jsonb, embedding real[]) ON COMMIT DROP"
            )
            copy_sql = f"COPY {t}_staging ({self._COLUMNS}) FROM STDIN WITH (FORMAT BINARY)"
            with cursor.copy(copy_sql) as copy:
                copy.set_types(["text", "text", "int8", "text", "jsonb", "float4[]"])
                for r in records:
                    copy.write_row(
                        (
                            r.id,
                            str(r.metadata.get("partition", "")),
                            r.metadata.get("date_ts"),
                            r.document,
                            json.dumps(r.metadata),
                            np.asarray(r.vector, dtype=np.float32).tolist(),
                        )
                    )
            if rebuild:  # readers wait for this transaction only: the merge, not the build
                cursor.execute(f"DROP INDEX IF EXISTS {t}_hnsw")
            cursor.execute(
                f"INSERT INTO {t} ({self._COLUMNS}) SELECT id, partition, date_ts, document, "
                f"metadata, embedding::vector FROM {t}_staging "
                "ON CONFLICT (id) DO UPDATE SET partition = EXCLUDED.partition, "
                "date_ts = EXCLUDED.date_ts, document = EXCLUDED.document, "
                "metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding"
            )
        if not self._deferring:
            self._ensure_index()

    def _ensure_index(self) -> None:
        """The HNSW index, built if missing (after a bulk load, or when a writer was killed
        between its load and the build; searches stay exact and right meanwhile). Building
        blocks writers, not readers."""
        t = self.table
        if not self._exists():
            return
        with self.db.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{t}_hnsw",))
            if cursor.fetchone()[0]:
                return
            cursor.execute(f"SELECT count(*) FROM {t}")
            rows = int(cursor.fetchone()[0])
        memory = build_memory_mb(rows, (self.binding() or ("", 1536))[1])
        with self.db.transaction() as cursor:
            cursor.execute(f"SET LOCAL maintenance_work_mem = '{memory}MB'")
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw "
                "(embedding vector_cosine_ops)"
            )
        with self.db.cursor() as cursor:  # statistics for the plans (and the row count)
            cursor.execute(f"ANALYZE {t}")

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
        if where is not None and where.places:
            either = " OR ".join(f"metadata->>'{f}_folded' = ANY(%s)" for f in PLACE_FIELDS)
            clauses.append(f"({either})")
            args += [list(where.places)] * len(PLACE_FIELDS)
        if where is not None and where.near is not None:
            south, north, west, east = bounding_box(*where.near)
            clauses.append("(metadata->>'lat')::float8 BETWEEN %s AND %s")
            args += [south, north]
            if west <= east:
                clauses.append("(metadata->>'lon')::float8 BETWEEN %s AND %s")
                args += [west, east]
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def _plan(self, cursor, where: StoreFilter | None, top_k: int, exact: bool = False) -> None:
        """Inside a transaction: exact search for a narrow filter (or when asked), else
        HNSW with a search list long enough for ``top_k``; under a filter, with pgvector's
        iterative scan (0.8 and later), which goes on through the graph until enough rows
        pass the filter instead of filtering one list and returning what is left."""
        # Plans for this very vector and limit: a generic plan (psycopg prepares a statement
        # run five times) does not know the limit and may sort the whole table instead of
        # walking the graph; and compiling a plan (JIT) costs more than the search.
        cursor.execute("SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off")
        condition, args = self._where(where)
        matching = None
        if condition and not exact:
            cursor.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {self.table}{condition} LIMIT %s) AS m",
                [*args, COUNT_CAP + 1],
            )
            matching = int(cursor.fetchone()[0])
            exact = matching <= EXACT_SEARCH_ROWS
        if exact:
            cursor.execute("SET LOCAL enable_indexscan = off")
            return
        iterative = bool(condition) and self._iterative_scans()
        ef = EF_SEARCH
        if iterative and matching is not None:
            share = matching / max(matching, self._rows(cursor))
            ef = round(FILTERED_EF_SEARCH * BROAD_SHARE / max(share, 1e-6))
            ef = max(FILTERED_EF_SEARCH, min(MAX_EF_SEARCH, ef))
        cursor.execute(f"SET LOCAL hnsw.ef_search = {max(ef, min(MAX_EF_SEARCH, top_k))}")
        if iterative:
            cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")

    def _rows(self, cursor) -> int:
        """The table's rows as the statistics have them (no scan; -1 before any)."""
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [self.table]
        )
        return int(cursor.fetchone()[0])

    def _iterative_scans(self) -> bool:
        """Whether the server's pgvector has iterative index scans (0.8.0 and later)."""
        if self._pgvector_version is None:
            with self.db.cursor() as cursor:
                cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                row = cursor.fetchone()
            self._pgvector_version = tuple(
                int(part) for part in re.findall(r"\d+", row[0] if row else "0")[:2]
            )
        return self._pgvector_version >= (0, 8)

    def query(
        self, vector: np.ndarray, top_k: int, where: StoreFilter | None = None
    ) -> list[VectorHit]:
        if top_k <= 0 or not self._exists():
            return []
        rows = self._nearest(vector, top_k, where)
        if len(rows) < top_k and where is not None and self._where(where)[0]:
            # an approximate plan returned fewer rows than asked; the filter decides, exactly
            rows = self._nearest(vector, top_k, where, exact=True)
        return [
            VectorHit(id=id_, score=float(score), document=doc, metadata=meta)
            for id_, score, doc, meta in rows
        ]

    def _nearest(
        self, vector: np.ndarray, top_k: int, where: StoreFilter | None, exact: bool = False
    ) -> list[tuple]:
        condition, args = self._where(where)
        literal = _literal(vector)
        with self.db.transaction() as cursor:
            self._plan(cursor, where, top_k, exact)
            # relaxed order (iterative scans) can return rows slightly out of order: sorted
            # again over the few rows found
            cursor.execute(
                f"SELECT id, 1 - distance, document, metadata FROM ("
                f"SELECT id, embedding <=> %s::vector AS distance, document, metadata "
                f"FROM {self.table}{condition} ORDER BY distance LIMIT %s"
                ") AS found ORDER BY distance",
                [literal, *args, top_k],
            )
            return cursor.fetchall()

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
