"""Retrieval latency without the LLM, warm: the query is embedded with the real model and
searched in an embedded Chroma index holding N synthetic vectors (random unit vectors with
realistic metadata; the index work does not depend on what the vectors mean).

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


def measure(count: int, repeats: int = 60) -> dict:
    embedder = build_embedder()
    dimension = embedder.dimension
    with tempfile.TemporaryDirectory() as tmp:
        store = ChromaVectorStore(f"latency-{count}", path=Path(tmp))
        fill(store, count, dimension, embedder.fingerprint)
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
    return {
        "vectors": count,
        "p50_ms": round(float(np.percentile(timings, 50)), 1),
        "p95_ms": round(float(np.percentile(timings, 95)), 1),
        "filtered_p50_ms": round(float(np.percentile(filtered, 50)), 1),
        "filtered_p95_ms": round(float(np.percentile(filtered, 95)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    args.json.write_text(json.dumps([measure(n) for n in args.sizes], indent=2))


if __name__ == "__main__":
    main()
