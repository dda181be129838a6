"""pgvector at scale, against what Postgres + pgvector itself does in the same run.

Vectors like ``../shared/anchors/pgvector_1m_anchor.py``'s (clustered, anisotropic noise,
100 prefixes of Zipf-like sizes, dates over ten years), so that recall means something.

1. The raw limit, with its own code: binary COPY into a table without an index, then one
   HNSW build (m=16, ef_construction=64); and the rate of adding rows to the indexed table.
2. The pipeline's store (``PgVectorStore.upsert`` in the pipeline's batches) filling the
   same vectors from nothing, and adding rows to the indexed table, with the ratios.
3. Filtered search through the store at several selectivities (one prefix, several, a date
   range) and unfiltered: p50 / p95 latency, recall@10 against exact search (numpy), and the
   method the store chose.

    python -m bench.scale --vectors 100000 --json OUT      (1,000,000: make bench-scale)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import psycopg

from dam_pipeline.vector_stores import pgvector_store
from dam_pipeline.vector_stores.base import StoreFilter, VectorRecord, VectorStore
from dam_pipeline.vector_stores.pgvector_store import PgVectorStore
from dam_pipeline_tests.servers import postgres_server

PREFIXES = 100
TEN_YEARS = 3652 * 86400
START = 1_420_070_400  # 2015-01-01
QUERIES = 60
ADDED = 5_000
CHROMA_BATCH = 2_000
"""Rows per request of the raw Chroma fill: the server's own maximum (41,666 here) exceeds
its HTTP body limit with 384-d vectors (413)."""
WARM_UP = 20
"""Queries (other than the measured ones) run on each case before it is timed."""
ANCHOR_BUILD_MEMORY = "8GB"
"""The raw limit's settings are the anchor's (``../shared/anchors/pgvector_1m_anchor.json``):
an 8 GB ``maintenance_work_mem`` for the build and 8 GB of shared buffers on the server."""


def vectors(n: int, dim: int, seed: int = 7) -> tuple[np.ndarray, ...]:
    """(unit vectors, prefix number, date, queries) as the anchor makes them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 500), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    spectrum = np.arange(1, dim + 1, dtype=np.float64) ** -0.7
    noise = (basis * (spectrum / np.sqrt((spectrum**2).sum()) * 0.9)).astype(np.float32).T
    labels = rng.integers(0, len(centres), n)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        end = min(n, start + 100_000)
        x = centres[labels[start:end]] + rng.standard_normal((end - start, dim), np.float32) @ noise
        out[start:end] = x / np.linalg.norm(x, axis=1, keepdims=True)
    weights = (np.arange(1, PREFIXES + 1) + 9.75) ** -2.5
    prefixes = rng.choice(PREFIXES, n, p=weights / weights.sum())
    dates = START + rng.integers(0, TEN_YEARS, n)
    queries = out[rng.choice(n, QUERIES, replace=False)]
    queries = queries + 0.5 * (rng.standard_normal(queries.shape, np.float32) @ noise)
    return out, prefixes, dates, queries / np.linalg.norm(queries, axis=1, keepdims=True)


def _binary_rows(ids: np.ndarray, prefixes: np.ndarray, dates: np.ndarray, x: np.ndarray):
    """Postgres binary COPY rows (id, partition, date_ts, embedding), built with numpy."""
    dim = x.shape[1]
    layout = np.dtype(
        [("fields", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"), ("partition", "S10"),
         ("l3", ">i4"), ("date", ">i8"), ("l4", ">i4"), ("dim", ">i2"), ("unused", ">i2"),
         ("vector", ">f4", (dim,))]
    )  # fmt: skip
    rows = np.empty(len(ids), layout)
    rows["fields"], rows["l1"], rows["id"], rows["l2"] = 4, 8, ids, 10
    names = np.array([f"prefix_{p:03d}".encode() for p in range(PREFIXES)], dtype="S10")
    rows["partition"], rows["l3"], rows["date"] = names[prefixes], 8, dates
    rows["l4"], rows["dim"], rows["unused"], rows["vector"] = 4 + 4 * dim, dim, 0, x
    return rows.tobytes()


def raw_limit(url: str, x, prefixes, dates, added) -> dict:
    header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        db.execute(
            f"CREATE TABLE raw (id bigint PRIMARY KEY, partition text, date_ts bigint, "
            f"embedding vector({x.shape[1]}))"
        )
        start = time.perf_counter()
        with db.cursor() as cursor, cursor.copy("COPY raw FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.write(header)
            for a in range(0, len(x), 50_000):
                b = min(len(x), a + 50_000)
                copy.write(_binary_rows(np.arange(a, b), prefixes[a:b], dates[a:b], x[a:b]))
            copy.write((-1).to_bytes(2, "big", signed=True))
        copied = time.perf_counter() - start
        db.execute(f"SET maintenance_work_mem = '{ANCHOR_BUILD_MEMORY}'")
        start = time.perf_counter()
        db.execute("CREATE INDEX ON raw USING hnsw (embedding vector_cosine_ops)")
        built = time.perf_counter() - start
        n = len(added[0])
        start = time.perf_counter()
        with db.cursor() as cursor, cursor.copy("COPY raw FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.write(header)
            copy.write(_binary_rows(np.arange(len(x), len(x) + n), *added))
            copy.write((-1).to_bytes(2, "big", signed=True))
        adding = time.perf_counter() - start
        db.execute("DROP TABLE raw")
    return {
        "copy_seconds": round(copied, 1),
        "build_seconds": round(built, 1),
        "searchable_from_nothing_seconds": round(copied + built, 1),
        "rows_per_second_from_nothing": round(len(x) / (copied + built), 1),
        "adding_rows_per_second": round(n / adding, 1),
    }


def _records(start: int, x, prefixes, dates) -> list[VectorRecord]:
    return [
        VectorRecord(
            f"v{start + i}",
            x[i],
            f"photo {start + i}",
            {"partition": f"prefix_{prefixes[i]:03d}", "date_ts": int(dates[i])},
        )
        for i in range(len(x))
    ]


def store_fill(url: str, x, prefixes, dates, added) -> tuple[PgVectorStore, dict]:
    store = PgVectorStore(url, collection="scale")
    store.ensure_compatible("bench", x.shape[1])
    start = time.perf_counter()
    with store.batch_writes():  # as the vector_index step writes a run's partitions
        for a in range(0, len(x), store.upsert_batch):
            b = min(len(x), a + store.upsert_batch)
            store.upsert(_records(a, x[a:b], prefixes[a:b], dates[a:b]))
    filled = time.perf_counter() - start
    start = time.perf_counter()
    with store.batch_writes():
        store.upsert(_records(len(x), *(added[2], added[0], added[1])))
    adding = time.perf_counter() - start
    return store, {
        "searchable_from_nothing_seconds": round(filled, 1),
        "rows_per_second_from_nothing": round(len(x) / filled, 1),
        "adding_rows_per_second": round(len(added[0]) / adding, 1),
    }


def prewarm(url: str, store: PgVectorStore) -> None:
    """The table and its indexes into shared buffers (``pg_prewarm``), as a server in use
    holds them: a cold graph costs a disk (or page-cache) read per node visited."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        relations = db.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
            (store.table,),
        ).fetchall()
        for (relation,) in [(store.table,), *relations]:
            db.execute("SELECT pg_prewarm(%s)", (relation,))


def filtered_search(store: VectorStore, x, prefixes, dates, queries, method=None) -> list[dict]:
    """p50 / p95 and recall@10 per filter; ``method(rows, share, where)`` names what the
    store chose (default: pgvector's choice)."""
    method = method or _pgvector_method
    sizes = np.bincount(prefixes, minlength=PREFIXES) / len(x)
    order = np.argsort(sizes)

    def prefixes_near(share: float) -> tuple[int, ...]:
        """The prefix whose share of the rows is nearest ``share``."""
        return (int(min(range(PREFIXES), key=lambda p: abs(sizes[p] - share))),)

    cases: list[tuple[str, StoreFilter | None, np.ndarray]] = [
        ("none", None, np.ones(len(x), bool))
    ]
    for share in (0.0005, 0.01, 0.03, 0.05, 0.10):
        chosen = prefixes_near(share)
        mask = np.isin(prefixes, chosen)
        names = tuple(f"prefix_{p:03d}" for p in chosen)
        cases.append((f"prefix ~{share:.2%}", StoreFilter(partitions=names), mask))
    several = tuple(int(p) for p in order[40:46])
    cases.append(
        ("6 prefixes", StoreFilter(partitions=tuple(f"prefix_{p:03d}" for p in several)),
         np.isin(prefixes, several))
    )  # fmt: skip
    for share in (0.05, 0.30):  # 30%: broad enough for the graph in every store
        low = START + TEN_YEARS // 2
        high = low + int(TEN_YEARS * share)
        cases.append(
            (f"date range ({share:.0%})", StoreFilter(date_from=low, date_to=high),
             (dates >= low) & (dates <= high))
        )  # fmt: skip
    rows = []
    warm_up = x[np.random.default_rng(1).choice(len(x), WARM_UP, replace=False)]
    for name, where, mask in cases:
        subset = np.flatnonzero(mask)
        # the right answers first, all at once: numpy scanning a million rows between two
        # timed queries slows them down fivefold (memory traffic), which no user sees
        scores = x[subset] @ queries.T
        exact = subset[np.argsort(-scores, axis=0)[:10].T]
        del scores
        for q in warm_up:  # other queries first: a server in use has its pages in memory
            store.query(q, top_k=10, where=where)
        times, found = [], []
        for q in queries:
            start = time.perf_counter()
            hits = store.query(q, top_k=10, where=where)
            times.append((time.perf_counter() - start) * 1000)
            found.append({int(h.id[1:]) for h in hits})
        recalls = [
            len(got & set(right.tolist())) / min(10, len(subset))
            for got, right in zip(found, exact, strict=True)
        ]
        rows.append(
            {
                "filter": name,
                "selectivity": round(float(mask.mean()), 5),
                "rows": int(mask.sum()),
                "method": method(int(mask.sum()), float(mask.mean()), where),
                "p50_ms": round(float(np.percentile(times, 50)), 1),
                "p95_ms": round(float(np.percentile(times, 95)), 1),
                "recall_at_10": round(float(np.mean(recalls)), 3),
            }
        )  # fmt: skip
    return rows


def _pgvector_method(rows: int, share: float, where: StoreFilter | None) -> str:
    """What ``PgVectorStore`` chooses for a filter leaving ``rows`` (``share`` of the table)."""
    if where is None:
        return f"hnsw, ef_search {pgvector_store.EF_SEARCH}"
    if rows <= pgvector_store.EXACT_SEARCH_ROWS:
        return "exact"
    return f"hnsw + iterative scan, ef_search {_ef(share)}"


def _ef(share: float) -> int:
    """The search list ``PgVectorStore`` chooses for a filter keeping ``share`` of the rows."""
    ef = round(pgvector_store.FILTERED_EF_SEARCH * pgvector_store.BROAD_SHARE / share)
    return max(pgvector_store.FILTERED_EF_SEARCH, min(pgvector_store.MAX_EF_SEARCH, ef))


def _chroma_method(rows: int, share: float, where: StoreFilter | None) -> str:
    """What ``ChromaVectorStore`` chooses for the bench's filters (partitions, dates): a scan
    of the flat copy when it keeps at most ``EXACT_UP_TO`` records; else the graph's nearest
    records filtered here when a list of 600 (or, in a large collection, 2,000) holds enough,
    else Chroma's own filter."""
    from dam_pipeline.vector_stores import chroma

    if where is None:
        return "hnsw"
    dated = where.date_from is not None or where.date_to is not None
    if rows <= (chroma.EXACT_DATED_UP_TO if dated else chroma.EXACT_UP_TO):
        return "exact scan of the flat copy"
    total = rows / share
    if total < chroma.OVERFETCH_FROM:
        return "chroma's filter"
    lists = chroma.OVERFETCH if total >= chroma.LONGER_LIST_FROM else chroma.OVERFETCH[:1]
    if share * lists[0] >= 10:
        return f"{lists[0]} nearest, filtered"
    if share * lists[-1] >= 10:
        return f"up to {lists[-1]} nearest, filtered"
    return "chroma's filter"


def chroma_scale(work: Path, x, prefixes, dates, queries, n: int) -> dict:
    """Chroma, the default store, the same way: its own batch add (``CHROMA_BATCH`` rows a
    request, ids, vectors, the two filter fields) against ``ChromaVectorStore.upsert``
    as the vector_index step calls it, both on one local server; then search."""
    from dam_pipeline.vector_stores import ChromaVectorStore, chroma

    store = ChromaVectorStore("scale", path=work / "chroma", idle_seconds=3600)
    raw = store.client.get_or_create_collection("raw", metadata={"hnsw:space": "cosine"})
    batch = min(CHROMA_BATCH, store.client.get_max_batch_size())
    start = time.perf_counter()
    for a in range(0, n, batch):
        b = min(n, a + batch)
        raw.upsert(
            ids=[f"v{i}" for i in range(a, b)],
            embeddings=x[a:b],
            documents=[f"photo {i}" for i in range(a, b)],
            metadatas=[
                {"partition": f"prefix_{prefixes[i]:03d}", "date_ts": int(dates[i])}
                for i in range(a, b)
            ],
        )
    raw_seconds = time.perf_counter() - start
    store.client.delete_collection("raw")
    store.ensure_compatible("bench", x.shape[1])
    start = time.perf_counter()
    for a in range(0, n, store.upsert_batch):
        b = min(n, a + store.upsert_batch)
        store.upsert(_records(a, x[a:b], prefixes[a:b], dates[a:b]))
    store_seconds = time.perf_counter() - start
    search = filtered_search(store, x[:n], prefixes[:n], dates[:n], queries, method=_chroma_method)
    return {
        "raw": {"batch": batch, "rows_per_second": round(n / raw_seconds, 1)},
        "store": {"batch": store.upsert_batch, "rows_per_second": round(n / store_seconds, 1)},
        "ratios": {"fill_vs_raw": round(raw_seconds / store_seconds, 2)},
        "search": search,
        "disk_mb": {
            "chroma": _megabytes(work / "chroma"),
            "flat_copy": _megabytes(work / f"chroma{chroma.FLAT_SUFFIX}"),
        },
        "peak_rss_mb_of_the_searching_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        // 1024,
    }


def _megabytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) // 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--work", type=Path, default=Path("/tmp/dam-bench-scale"))
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument(
        "--search-only",
        action="store_true",
        help="search the store an earlier run of the same size left in --work, and replace "
        "the search figures of --json (for changes to the search alone)",
    )
    parser.add_argument(
        "--store", choices=("pgvector", "chroma"), default="pgvector", help="which store"
    )
    args = parser.parse_args()
    x, prefixes, dates, queries = vectors(args.vectors + ADDED, args.dim)
    if args.store == "chroma" and args.search_only:
        from dam_pipeline.vector_stores import ChromaVectorStore

        result = json.loads(args.json.read_text())
        store = ChromaVectorStore("scale", path=args.work / "chroma", idle_seconds=600)
        n = args.vectors
        result["search"] = filtered_search(
            store, x[:n], prefixes[:n], dates[:n], queries, method=_chroma_method
        )
        result["search_measured_again"] = True
        args.json.write_text(json.dumps(result, indent=2))
        print(json.dumps(result["search"], indent=2))
        return
    if args.store == "chroma":
        shutil.rmtree(args.work, ignore_errors=True)
        result = {
            "vectors": args.vectors,
            "dimension": args.dim,
            "store": "chroma",
            **chroma_scale(args.work, x, prefixes, dates, queries, args.vectors),
        }
        args.json.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return
    base = (x[: args.vectors], prefixes[: args.vectors], dates[: args.vectors])
    added = (prefixes[args.vectors :], dates[args.vectors :], x[args.vectors :])
    if args.search_only:
        result = json.loads(args.json.read_text())
        with postgres_server(args.work / "postgres", shared_buffers="8GB") as url:
            store = PgVectorStore(url, collection="scale")
            prewarm(url, store)
            result["search"] = filtered_search(store, x, prefixes, dates, queries)
        result["search_measured_again"] = True
        args.json.write_text(json.dumps(result, indent=2))
        print(json.dumps(result["search"], indent=2))
        return
    shutil.rmtree(args.work, ignore_errors=True)
    with postgres_server(args.work / "postgres", shared_buffers="8GB") as url:
        with psycopg.connect(url, autocommit=True) as db:
            version = db.execute("SHOW server_version").fetchone()[0]
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            pgvector = db.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]
        raw = raw_limit(url, *base, (added[0], added[1], added[2]))
        store, filled = store_fill(url, *base, added)
        prewarm(url, store)
        search = filtered_search(store, x, prefixes, dates, queries)  # every row stored
        with psycopg.connect(url) as db:
            table_bytes, index_bytes = db.execute(
                "SELECT pg_total_relation_size(%s), pg_relation_size(%s)",
                (store.table, f"{store.table}_hnsw"),
            ).fetchone()
    result = {
        "vectors": args.vectors,
        "dimension": args.dim,
        "postgres": version,
        "pgvector": pgvector,
        "raw": raw,
        "store": filled,
        "ratios": {
            "from_nothing_vs_raw": round(
                filled["searchable_from_nothing_seconds"] / raw["searchable_from_nothing_seconds"],
                2,
            ),
            "adding_vs_raw": round(
                filled["adding_rows_per_second"] / raw["adding_rows_per_second"], 2
            ),
        },
        "search": search,
        "disk_mb": {"table_with_indexes": table_bytes // 2**20, "hnsw": index_bytes // 2**20},
        "peak_rss_mb_of_the_searching_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        // 1024,
    }
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
