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


def _alike(count: int, seed: int) -> np.ndarray:
    """Unit vectors that all lean one way, as caption embeddings of photos do."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, DIM)) * 0.6 + np.linspace(1, 2, DIM)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _copies(vector: np.ndarray, count: int, dates: list[int]) -> list[VectorRecord]:
    return [
        VectorRecord(
            id=f"copy-{i:03d}",
            vector=vector,
            document="the same photo",
            metadata={"partition": "copies", "key": f"copies/{i}.jpg", "date_ts": dates[i]},
        )
        for i in range(count)
    ]


def test_many_identical_vectors_hide_nothing(store) -> None:
    """150 copies of one photo indexed after 20 others: exact search finds each of the 20 by
    its own vector, and so must the store (HNSW graphs lose nodes around large groups of
    identical points); the copies themselves all come back, filters included."""
    store.ensure_compatible("test/model", DIM)
    vectors = _alike(21, seed=7)
    others = [
        VectorRecord(f"other-{i:02d}", v, f"photo {i}", {"partition": "p", "key": f"p/{i}.jpg"})
        for i, v in enumerate(vectors[:20])
    ]
    store.upsert(others)
    dates = [1_600_000_000 + i * 86_400 for i in range(150)]  # one a day: not all alike
    store.upsert(_copies(vectors[20], 150, dates))
    assert store.count() == 170
    found = [store.query(r.vector, top_k=1)[0].id == r.id for r in others]
    assert sum(found) == 20
    in_p = StoreFilter(partitions=("p",))
    assert sum(store.query(r.vector, top_k=1, where=in_p)[0].id == r.id for r in others) == 20

    hits = store.query(vectors[20], top_k=200)
    assert sorted(h.id for h in hits[:150]) == [f"copy-{i:03d}" for i in range(150)]
    assert all(h.score == pytest.approx(1.0, abs=1e-4) for h in hits[:150])
    assert all(set(h.metadata) == {"partition", "key", "date_ts"} for h in hits[:150])
    late = StoreFilter(partitions=("copies",), date_from=dates[140])  # the first copy is older
    assert sorted(h.id for h in store.query(vectors[20], top_k=50, where=late)) == [
        f"copy-{i:03d}" for i in range(140, 150)
    ]
    assert len(store.list_partition("copies")) == 150

    store.delete([f"copy-{i:03d}" for i in range(0, 150, 2)], "copies")  # the first one too
    assert store.count() == 95
    left = store.query(vectors[20], top_k=200)
    assert sorted(h.id for h in left[:75]) == [f"copy-{i:03d}" for i in range(1, 150, 2)]
    vector, meta, _ = store.fetch([("copy-149", "copies")])["copy-149"]
    assert np.allclose(vector, vectors[20], atol=1e-5) and meta["key"] == "copies/149.jpg"


def test_chroma_keeps_one_of_identical_vectors_searchable(tmp_path) -> None:
    """How Chroma holds the copies: per partition, the smallest id of a group of identical
    vectors in the searched collection, the rest beside it; a changed vector leaves its group."""
    store = ChromaVectorStore("groups", path=tmp_path / "chroma")
    v, w = _alike(2, seed=3)
    group = _copies(v, 5, [0] * 5)
    store.upsert(group)
    store.upsert(group)  # again: nothing moves
    elsewhere = VectorRecord("copy-x", v, "", {"partition": "other", "key": "other/x.jpg"})
    store.upsert([elsewhere])  # the same vector in another partition is its own group
    assert sorted(store.collection.get()["ids"]) == ["copy-000", "copy-x"]
    assert store.copies.count() == 4 and store.count() == 6

    moved = VectorRecord("copy-000", w, "", group[0].metadata)  # the representative changes
    store.upsert([moved])
    assert sorted(store.collection.get()["ids"]) == ["copy-000", "copy-001", "copy-x"]
    in_copies = StoreFilter(partitions=("copies",))
    assert [h.id for h in store.query(w, top_k=1, where=in_copies)] == ["copy-000"]
    hits = store.query(v, top_k=10, where=in_copies)
    assert sorted(h.id for h in hits[:4]) == ["copy-001", "copy-002", "copy-003", "copy-004"]
    assert [h.id for h in hits[4:]] == ["copy-000"] and hits[4].score < 0.999
    store.delete(["copy-001", "copy-002", "copy-003"], "copies")
    assert store.copies.count() == 0 and store.count() == 3
    store.reset()
    assert store.count() == 0


def test_chroma_finds_what_another_writer_added_after_its_last_query(tmp_path) -> None:
    """A query trusts the collection sizes it read a moment ago (counting a large
    collection is slow); the records and copies another process writes meanwhile are
    still found."""
    reader = ChromaVectorStore("shared", path=tmp_path / "chroma")
    writer = ChromaVectorStore("shared", path=tmp_path / "chroma")
    writer.upsert(records("a", 3))
    assert len(reader.query(records("a", 3)[0].vector, top_k=10)) == 3
    more = records("b", 12)
    writer.upsert(more)
    hits = reader.query(more[0].vector, top_k=10)
    assert len(hits) == 10 and hits[0].id == more[0].id
    twin = VectorRecord("b-twin", more[0].vector, "", {"partition": "b", "key": "b/twin.jpg"})
    writer.upsert([twin])  # a copy, held beside its representative
    reader._sizes_read_at -= 60  # once the sizes are old enough to be read again
    found = [h.id for h in reader.query(more[0].vector, top_k=2)]
    assert sorted(found) == sorted([more[0].id, "b-twin"])


def test_chroma_filters_a_large_collection_without_losing_or_adding_hits(tmp_path) -> None:
    """A large collection answers a broad filter from its unfiltered nearest records,
    filtered here, and a narrow one through Chroma's filter: both give what Chroma's own
    filter gives, and each hit passes the filter."""
    store = ChromaVectorStore("big", path=tmp_path / "chroma")
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(1200, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    partitions = ["broad" if i % 4 else f"narrow-{i % 300}" for i in range(len(vectors))]
    store.upsert(
        [
            VectorRecord(
                f"v{i}", vectors[i], "", {"partition": p, "key": f"{p}/{i}.jpg", "date_ts": i}
            )
            for i, p in enumerate(partitions)
        ]
    )
    store.overfetch_from = 1000  # this collection counts as large
    store.exact_up_to = store.exact_dated_up_to = 0  # no filter is narrow enough to scan
    for where in (
        StoreFilter(partitions=("broad",)),  # 75%: the nearest 300 hold plenty
        StoreFilter(date_from=100, date_to=700),  # 50%
        StoreFilter(partitions=("narrow-8",)),  # four records: Chroma's filter
        StoreFilter(partitions=("narrow-4", "narrow-12"), date_from=0, date_to=5),  # none
    ):
        for q in vectors[:5]:
            hits = store.query(q, top_k=10, where=where)
            expected = store._search(q, 10, where.where())
            assert [h.id for h in hits] == [h.id for h in expected]
            assert all(where.accepts(h.metadata) for h in hits)
    assert len(store.query(vectors[0], top_k=10, where=StoreFilter(partitions=("narrow-8",)))) == 4


def _exact_top(vectors: np.ndarray, ids: list[str], keep: np.ndarray, q: np.ndarray, k: int):
    rows = np.flatnonzero(keep)
    scores = vectors[rows] @ q
    order = sorted(range(len(rows)), key=lambda i: (-scores[i], ids[rows[i]]))[:k]
    return [ids[rows[i]] for i in order], [float(scores[i]) for i in order]


def test_chroma_answers_narrow_filters_exactly_from_its_flat_copy(tmp_path, monkeypatch) -> None:
    """Partitions and dates that keep few records are scanned in the flat copy: the hits
    are the exact nearest (numpy's), with their own documents, metadata and scores, through
    replacements, moves between partitions, deletions, rewrites of mostly dead files, and a
    writer that died before marking the rows it replaced."""
    from dam_pipeline.vector_stores import flat_partitions

    monkeypatch.setattr(flat_partitions, "COMPACT_FROM", 50)
    store = ChromaVectorStore("exact", path=tmp_path / "chroma")
    rng = np.random.default_rng(11)
    n = 1500
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"v{i:04d}" for i in range(n)]
    part = np.array([f"p{min(int(rng.zipf(1.6)), 30)}" for _ in range(n)])
    dates = rng.integers(0, 1000, n)
    dated = rng.random(n) > 0.1  # some records have no date

    def write(rows) -> None:
        store.upsert(
            [
                VectorRecord(
                    ids[i],
                    vectors[i],
                    f"doc {ids[i]} {part[i]}",
                    {"partition": str(part[i]), "key": f"{part[i]}/{ids[i]}.jpg"}
                    | ({"date_ts": int(dates[i])} if dated[i] else {}),
                )
                for i in rows
            ]
        )

    write(range(n))
    alive = np.ones(n, bool)

    def check() -> None:
        filters = [
            (StoreFilter(partitions=("p2",)), part == "p2"),
            (StoreFilter(partitions=("p5", "p9", "p30")), np.isin(part, ["p5", "p9", "p30"])),
            (StoreFilter(date_from=100, date_to=160), dated & (dates >= 100) & (dates <= 160)),
            (StoreFilter(date_to=40), dated & (dates <= 40)),
            (
                StoreFilter(partitions=("p1",), date_from=500),
                (part == "p1") & dated & (dates >= 500),
            ),
        ]
        for where, keep in filters:
            assert store._exact(vectors[0], 10, where) is not None  # the scan
            for q in vectors[:6]:
                right, scores = _exact_top(vectors, ids, keep & alive, q, 10)
                hits = store.query(q, top_k=10, where=where)
                assert [h.id for h in hits] == right, where
                assert np.allclose([h.score for h in hits], scores, atol=1e-5)
                for hit in hits:
                    i = ids.index(hit.id)
                    assert hit.document == f"doc {hit.id} {part[i]}"
                    assert hit.metadata["partition"] == part[i]
                    assert where.accepts(hit.metadata)

    assert store.flat.complete and store.flat.count() == n
    check()
    # new vectors for one partition (as after a new captioner), written twice over
    changed = np.flatnonzero(part == "p1")
    for _ in range(2):
        vectors[changed] = rng.normal(size=(len(changed), DIM))
        vectors[changed] /= np.linalg.norm(vectors[changed], axis=1, keepdims=True)
        write(changed)
    check()
    files = sorted(p.name for p in store.flat.folder.glob("*.vectors"))
    assert len(files) == len(set(part)), files  # p1's mostly dead file was rewritten
    # records moved to another partition, others deleted
    moved = np.flatnonzero(part == "p3")[:20]
    part[moved] = "p2"
    write(moved)
    gone = np.flatnonzero(part == "p5")[:5]
    store.delete([ids[i] for i in gone], "p5")
    alive[gone] = False
    check()
    # a writer that died after committing new rows, before marking the old ones dead
    monkeypatch.setattr(flat_partitions.FlatPartitions, "_mark_dead", lambda self, found: None)
    again = np.flatnonzero(part == "p2")[:30]
    vectors[again] = -vectors[again]
    write(again)
    check()
    assert store.flat.count() == n - len(gone)


def test_chroma_fills_the_flat_copy_of_an_index_from_before_it(tmp_path) -> None:
    """An index folder written before the flat copy existed is searched through the graph
    until the next run's writes fill the copy; then narrow filters are exact."""
    import shutil

    from dam_pipeline.vector_stores.local_chroma import stop_server

    first = ChromaVectorStore("old", path=tmp_path / "chroma")
    written = records("a", 40) + records("b", 60, offset=40)
    first.upsert(written)
    shutil.rmtree(first.flat.folder)
    store = ChromaVectorStore("old", path=tmp_path / "chroma")
    assert not store.flat.complete
    where = StoreFilter(partitions=("b",))
    q = written[45].vector
    before = [h.id for h in store.query(q, top_k=5, where=where)]
    with store.batch_writes():
        pass
    assert store.flat.complete and store.flat.count() == 100
    vectors = np.stack([r.vector for r in written])
    keep = np.array([r.metadata["partition"] == "b" for r in written])
    right, _ = _exact_top(vectors, [r.id for r in written], keep, q, 5)
    assert [h.id for h in store.query(q, top_k=5, where=where)] == right
    assert before[0] == right[0] == written[45].id
    store.reset()
    assert store.flat.complete and store.flat.count() == 0
    assert store.query(q, top_k=5, where=where) == []
    # an index folder removed by hand leaves no records in the copy to be found
    store.upsert(written)
    stop_server(tmp_path / "chroma")
    shutil.rmtree(tmp_path / "chroma")
    fresh = ChromaVectorStore("old", path=tmp_path / "chroma")
    assert fresh.flat.complete and fresh.flat.count() == 0
    fresh.upsert(written[:3])
    assert [h.id for h in fresh.query(q, top_k=5, where=StoreFilter(partitions=("a",)))] != []
    # a copy (identical vector, kept outside the graph) is found by the scan with its original
    twin = VectorRecord("a-twin", written[0].vector, "twin", {"partition": "a", "key": "a/t.jpg"})
    fresh.upsert([twin])
    hits = fresh.query(written[0].vector, top_k=2, where=StoreFilter(partitions=("a",)))
    assert sorted(h.id for h in hits) == sorted([written[0].id, "a-twin"])
    assert {h.document for h in hits} == {written[0].document, "twin"}
    assert fresh.copies.count() == 1


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


def test_place_and_distance_filters_run_in_every_store(store) -> None:
    from dam_pipeline.places.gazetteer import Place, place_metadata

    places = {
        (38.72, -9.14): Place("Intendente", "Lisbon", "Portugal", "PT", "Lisbon"),
        (-23.55, -46.63): Place("Se", "São Paulo", "Brazil", "BR", "São Paulo"),
        (48.86, 2.29): Place("Vanves", "Île-de-France", "France", "FR", "Paris"),
    }

    class Fixed:  # the gazetteer's answer for each position, without loading GeoNames
        def place(self, lat: float, lon: float) -> Place:
            return places[(lat, lon)]

    store.ensure_compatible("test/model", DIM)
    placed = []
    for i, (lat, lon) in enumerate(places):
        base = records("trip", 3)[i]
        meta = {**base.metadata, **place_metadata({"gps": {"lat": lat, "lon": lon}}, Fixed(), "on")}
        placed.append(VectorRecord(base.id, base.vector, base.document, meta))
    store.upsert(placed)

    def found(**where) -> set[str]:
        hits = store.query(placed[0].vector, top_k=10, where=StoreFilter(**where))
        return {h.metadata["place_country"] for h in hits}

    assert found(places=("sao paulo",)) == {"Brazil"}
    assert found(places=("paris", "portugal")) == {"France", "Portugal"}
    assert found(places=("lisbon",), partitions=("trip",)) == {"Portugal"}
    assert found(near=(48.85, 2.35, 20.0)) == {"France"}
    assert found(places=("atlantis",)) == set()


def test_flat_copy_reads_stay_whole_while_a_writer_rewrites(tmp_path, monkeypatch) -> None:
    """Queries during writes, dead-row marking and file rewrites see each record once, in
    its partition, with one of the vectors it was ever written with."""
    import threading

    from dam_pipeline.vector_stores import flat_partitions
    from dam_pipeline.vector_stores.flat_partitions import FlatPartitions, FlatRecord

    monkeypatch.setattr(flat_partitions, "COMPACT_FROM", 64)
    flat = FlatPartitions(tmp_path / "flat")
    rng = np.random.default_rng(3)
    versions = rng.normal(size=(2, 400, DIM)).astype(np.float32)
    versions /= np.linalg.norm(versions, axis=2, keepdims=True)
    part = [f"p{i % 4}" for i in range(400)]

    def write(version: int, rows: range) -> None:
        with flat.writing():
            flat.write([FlatRecord(f"r{i}", part[i], i, versions[version, i]) for i in rows])

    write(0, range(400))
    done = threading.Event()

    def writer() -> None:
        for round_ in range(30):
            write((round_ + 1) % 2, range(round_ % 4, 400, 3))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    queries = 0
    while not done.is_set() or queries < 20:
        q = versions[0, queries % 400]
        hits = flat.nearest(q, 10, partitions=("p1", "p2"), date_from=50)
        ids = [id_ for id_, _ in hits]
        assert len(ids) == 10 and len(set(ids)) == 10
        for id_, score in hits:
            i = int(id_[1:])
            assert part[i] in ("p1", "p2") and i >= 50
            assert min(abs(score - float(versions[v, i] @ q)) for v in (0, 1)) < 1e-5
        queries += 1
    thread.join()
    assert flat.count() == 400
    assert len(list(flat.folder.glob("*.vectors"))) == 4
