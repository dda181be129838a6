"""Retrieval latency without the LLM, warm: the query is embedded with the real model and
searched in an embedded Chroma index holding N synthetic vectors (random unit vectors with
realistic metadata; the index work does not depend on what the vectors mean), called in
process and through the web app's HTTP API (``GET /api/search`` under uvicorn).

    python -m bench.query_latency --sizes 1000 10000 100000 --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from tqdm import tqdm

from dam_pipeline.embedding import build_embedder
from dam_pipeline.retrieval import Filters, search
from dam_pipeline.retrieval.keyword_index import SqliteKeywordIndex
from dam_pipeline.settings import Settings
from dam_pipeline.vector_stores import ChromaVectorStore, VectorRecord

QUERIES = [
    "a cat on a sofa",
    "a cup of coffee",
    "a rocket launch",
    "a red car on a street",
    "people at the beach",
    "a dog in the snow",
    "a plate of food",
    "a mountain landscape",
]


def fill(store: ChromaVectorStore, count: int, dimension: int, fingerprint: str) -> None:
    store.ensure_compatible(fingerprint, dimension)
    rng = np.random.default_rng(count)
    step = 5000
    for start in tqdm(range(0, count, step), desc=f"filling {count}", unit="batch", leave=False):
        vectors = rng.normal(size=(min(step, count - start), dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.upsert(
            [
                VectorRecord(
                    id=f"v{start + i}",
                    vector=vector,
                    document=f"synthetic photo {start + i}",
                    metadata={
                        "partition": f"p{(start + i) % 50}",
                        "key": f"p{(start + i) % 50}/IMG_{start + i}.jpg",
                        "caption": f"synthetic photo {start + i}",
                    },
                )
                for i, vector in enumerate(vectors)
            ]
        )


def _percentiles(timings: list[float], prefix: str = "") -> dict:
    return {
        f"{prefix}p50_ms": round(float(np.percentile(timings, 50)), 1),
        f"{prefix}p95_ms": round(float(np.percentile(timings, 95)), 1),
    }


def measure_http(settings: Settings, repeats: int) -> dict:
    """``GET /api/search`` through a real HTTP server, warm (keep-alive client)."""
    import httpx

    from dam_pipeline.web import create_app
    from dam_pipeline.web.server import running

    with running(create_app(settings)) as address, httpx.Client(base_url=address) as client:
        for query in QUERIES:
            client.get("/api/search", params={"q": query, "top_k": 10}).raise_for_status()
        timings = []
        for i in range(repeats):
            start = time.perf_counter()
            response = client.get("/api/search", params={"q": QUERIES[i % len(QUERIES)]})
            timings.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return _percentiles(timings, "http_")


def measure(count: int, repeats: int = 60) -> dict:
    embedder = build_embedder()
    dimension = embedder.dimension
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), min_score=-1.0)
        store = ChromaVectorStore(settings.collection, path=settings.chroma_path)
        fill(store, count, dimension, embedder.fingerprint)
        SqliteKeywordIndex(settings.layout.keywords)  # the app checks that the index exists
        for query in QUERIES:  # warm: model, index pages, caches
            search(query, embedder, store, top_k=10, mode="dense")
        timings = []
        for i in range(repeats):
            start = time.perf_counter()
            search(QUERIES[i % len(QUERIES)], embedder, store, top_k=10, mode="dense")
            timings.append((time.perf_counter() - start) * 1000)
        filtered = []
        for i in range(repeats // 2):
            start = time.perf_counter()
            search(
                QUERIES[i % len(QUERIES)],
                embedder,
                store,
                top_k=10,
                filters=Filters(prefixes=("p1", "p2")),
                mode="dense",
            )
            filtered.append((time.perf_counter() - start) * 1000)
        http = measure_http(settings, repeats)
    return {
        "vectors": count,
        **_percentiles(timings),
        **_percentiles(filtered, "filtered_"),
        **http,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=60, help="timed queries of each kind")
    args = parser.parse_args()
    args.json.write_text(json.dumps([measure(n, args.repeats) for n in args.sizes], indent=2))


if __name__ == "__main__":
    main()
