"""The VectorStore contract, held by embedded Chroma, a real `chroma run` server, Pinecone
(the official client against a local server speaking its data-plane protocol) and pgvector
(a real Postgres 16 with the extension)."""

from __future__ import annotations

import numpy as np
import pytest

from dam_pipeline.vector_stores import (
    ChromaVectorStore,
    IncompatibleIndexError,
    PgVectorStore,
    PineconeVectorStore,
    VectorRecord,
)
from dam_pipeline.vector_stores.base import StoreFilter
from dam_pipeline.vector_stores.pinecone_store import MAX_METADATA_BYTES, fit_metadata
from dam_pipeline_tests.pinecone_server import PineconeIndexServer
from dam_pipeline_tests.servers import chroma_server

DIM = 8


def records(partition: str, count: int, offset: int = 0) -> list[VectorRecord]:
    rng = np.random.default_rng(count + offset)
    out = []
    for i in range(offset, offset + count):
        vector = rng.normal(size=DIM).astype(np.float32)
        out.append(
            VectorRecord(
                id=f"id-{partition.encode().hex()}-{i}"
                if not partition.isascii()
                else f"id-{partition}-{i}",
                vector=vector / np.linalg.norm(vector),
                document=f"photo {i}",
                metadata={
                    "partition": partition,
                    "key": f"{partition}/{i}.jpg",
                    "caption": f"photo {i}",
                },
            )
        )
    return out


@pytest.fixture(params=["chroma-embedded", "chroma-server", "pinecone", "pgvector"])
def store(request, tmp_path):
    if request.param == "pgvector":
        yield PgVectorStore(request.getfixturevalue("database_url"), "contract")
    elif request.param == "chroma-embedded":
        yield ChromaVectorStore("contract", path=tmp_path / "chroma")
    elif request.param == "chroma-server":
        with chroma_server(tmp_path / "served") as url:
            yield ChromaVectorStore("contract", url=url)
    else:
        with PineconeIndexServer(DIM) as server:
            yield PineconeVectorStore(api_key="pc-test", host=server.url)


def test_upserts_are_idempotent_and_partitions_separate(store) -> None:
    store.ensure_compatible("test/model", DIM)
    store.upsert(records("a", 5) + records("b ✨", 3))
    store.upsert(records("a", 5))  # the same ids again
    assert store.count() == 8
    assert len(store.list_partition("a")) == 5 and len(store.list_partition("b ✨")) == 3
    target = records("a", 5)[2]
    hits = store.query(target.vector, top_k=3, where=StoreFilter(partitions=("a",)))
    assert hits[0].id == target.id and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert all(h.metadata["partition"] == "a" for h in hits)
    assert hits[0].document == "photo 2"


def test_deletes_remove_exactly_the_given_ids(store) -> None:
    store.ensure_compatible("test/model", DIM)
    store.upsert(records("a", 6))
    store.delete(["id-a-0", "id-a-4"], "a")
    assert sorted(store.list_partition("a")) == ["id-a-1", "id-a-2", "id-a-3", "id-a-5"]


def test_the_index_refuses_another_model_or_dimension(store) -> None:
    store.ensure_compatible("test/model", DIM)
    store.ensure_compatible("test/model", DIM)  # the same binding is fine
    with pytest.raises(IncompatibleIndexError, match="re-index"):
        store.ensure_compatible("other/model", DIM)
    with pytest.raises(IncompatibleIndexError, match=r"\(8-d vectors\)"):
        store.ensure_compatible("test/model", DIM * 2)
    assert store.binding() == ("test/model", DIM)
    store.reset()
    assert store.binding() is None and store.count() == 0


def test_pinecone_batches_within_request_limits() -> None:
    with PineconeIndexServer(DIM) as server:
        store = PineconeVectorStore(api_key="pc-test", host=server.url)
        store.ensure_compatible("test/model", DIM)
        store.upsert(records("big", 2500))
        assert store.count() == 2500
        assert max(server.upsert_sizes) <= 1000 and sum(server.upsert_sizes) == 2501
        assert len(store.list_partition("big")) == 2500  # paged list + fetch in chunks
        long_caption = records("long", 1)[0]
        long_caption.metadata["caption"] = "é" * 100_000
        store.upsert([long_caption])  # would be refused by the server if over 40 KB
        stored = store.list_partition("long")["id-long-0"]
        assert 0 < len(stored["caption"]) < 100_000


def test_fit_metadata_cuts_long_text_only() -> None:
    meta = fit_metadata({"caption": "x" * 50_000, "key": "a.jpg", "empty": ""})
    assert len(str(meta).encode()) <= MAX_METADATA_BYTES + 100
    assert meta["key"] == "a.jpg" and "empty" not in meta
