"""The stores of pipeline state behave the same in the data directory and in the shared
profile (a real Postgres 16 with pgvector, moto's S3 server): manifests, the content cache,
the keyword index and the object store of normalized images."""

from __future__ import annotations

import io
import time
import uuid

import numpy as np
import pytest
from PIL import Image

from dam_pipeline.cache import PostgresContentCache, SqliteContentCache
from dam_pipeline.imaging import FolderObjectStore, S3ObjectStore
from dam_pipeline.manifests import (
    FolderManifestStore,
    Manifest,
    PostgresManifestStore,
    RawImage,
)
from dam_pipeline.postgres import PostgresDatabase, redacted
from dam_pipeline.retrieval import reciprocal_rank_fusion
from dam_pipeline.retrieval.keyword_index import (
    KeywordDocument,
    PostgresKeywordIndex,
    SqliteKeywordIndex,
    pg_query_text,
)
from dam_pipeline.vector_stores import PgVectorStore, VectorRecord
from dam_pipeline.vector_stores.base import StoreFilter
from dam_pipeline_tests.conftest import jpeg_bytes, moto_client, photo

KINDS = ["local", "postgres"]


@pytest.fixture(params=KINDS)
def kind(request) -> str:
    return request.param


def _db(request) -> PostgresDatabase:
    return PostgresDatabase(request.getfixturevalue("database_url"))


@pytest.fixture
def manifests(kind, tmp_path, request):
    return FolderManifestStore(tmp_path) if kind == "local" else PostgresManifestStore(_db(request))


@pytest.fixture
def cache(kind, tmp_path, request):
    if kind == "local":
        return SqliteContentCache(tmp_path / "cache.sqlite")
    return PostgresContentCache(_db(request))


@pytest.fixture
def keywords(kind, tmp_path, request):
    if kind == "local":
        return SqliteKeywordIndex(tmp_path / "keywords.sqlite")
    return PostgresKeywordIndex(_db(request))


@pytest.fixture
def outages(kind, tmp_path, request):
    from dam_pipeline.outages import PostgresOutageBoard, SqliteOutageBoard

    if kind == "local":
        return SqliteOutageBoard(tmp_path / "rate_limits.sqlite")
    return PostgresOutageBoard(request.getfixturevalue("database_url"))


def test_an_outage_one_run_finds_stops_the_others_until_its_pause_ends(outages) -> None:
    from dam_pipeline.retry import CircuitBreaker

    name = f"openai http://127.0.0.1:9/v1 {uuid.uuid4().hex}"  # one endpoint per test run
    finder, other = (CircuitBreaker(2, 1.0, outages, name) for _ in range(2))
    assert other.allows()  # nothing posted yet
    finder.failed("503 Service Unavailable")
    finder.failed("503 Service Unavailable")  # the second failure in a row opens it
    assert not finder.allows()
    other.reset()  # a new run, started after the outage was found
    assert not other.allows() and other.reason == "503 Service Unavailable"
    left, reason = outages.current(name)
    assert left == pytest.approx(1.0, abs=0.5) and reason == "503 Service Unavailable"
    time.sleep(1.05)  # the pause ends: one request may try, and its success clears the board
    assert finder.allows()
    finder.succeeded()
    assert outages.current(name) is None
    other.reset()
    assert other.allows()


def test_manifests_round_trip_replace_and_delete(manifests) -> None:
    assert manifests.read("raw_images", "kitchen") is None
    first = Manifest([RawImage("kitchen/a.jpg", 3, "2024-01-01", "v1")], {"seen": 1})
    manifests.write("raw_images", "kitchen", first)
    manifests.write("raw_images", "other", Manifest([], {"seen": 0}))
    second = Manifest([RawImage("kitchen/b ✨.jpg", 4, "2024-01-02", "v2")], {"seen": 1})
    manifests.write("raw_images", "kitchen", second)
    got = manifests.read("raw_images", "kitchen")
    assert got.records == second.records and got.summary == {"seen": 1}
    manifests.delete("raw_images", "kitchen")
    assert manifests.read("raw_images", "kitchen") is None
    assert manifests.read("raw_images", "other") is not None


def test_the_cache_returns_what_was_put_once_per_content(cache) -> None:
    cache.put_captions("local/v1", {"h1": {"text": "a cat"}, "h2": {"text": "a dog"}})
    cache.put_captions("local/v1", {"h1": {"text": "a cat"}})  # a second writer: same row
    assert cache.get_captions("local/v1", ["h1", "h3", "h1"]) == {"h1": {"text": "a cat"}}
    assert cache.get_captions("other/v1", ["h1"]) == {}
    vector = np.arange(4, dtype=np.float32)
    cache.put_vectors("minilm", {"t1": vector})
    got = cache.get_vectors("minilm", ["t1", "t2"])
    assert list(got) == ["t1"] and np.array_equal(got["t1"], vector)


DOCS = [
    KeywordDocument("1", "street", "street/red_car.jpg", "a photo of a parked vehicle", "car"),
    KeywordDocument("2", "street", "street/bus.jpg", "a bus passes a red car on the road"),
    KeywordDocument("3", "signs", "signs/shop.jpg", "a shop front", "", "ACME ROASTERS"),
    KeywordDocument("4", "pets", "pets/dog.jpg", "a dog running on grass", "dog"),
]


def test_keyword_search_behaves_the_same_in_both_stores(keywords) -> None:
    keywords.upsert(DOCS)
    keywords.upsert(DOCS[:1])  # replaced, not added
    assert keywords.count() == 4 and keywords.partitions() == ["pets", "signs", "street"]
    # stemming, and a tag outweighs a word in a long caption
    assert [vid for vid, _ in keywords.search("cars", 10)] == ["1", "2"]
    assert [vid for vid, _ in keywords.search("roasters", 10)] == ["3"]  # text read off it
    assert keywords.search("red_car", 10)[0][0] == "1"  # the file name
    assert [vid for vid, _ in keywords.search("car", 10, ["street"])] == ["1", "2"]
    assert keywords.search("car", 10, ["pets"]) == []
    # nothing of either query syntax gets through
    for hostile in ['"car', "car -dog", "car OR", "NEAR(car dog)", "dog:*", "!!!", "or"]:
        keywords.search(hostile, 10)
    assert keywords.partitions_of(["1", "4", "nope"]) == {"1": "street", "4": "pets"}
    keywords.delete(["1"])
    assert keywords.ids("street") == {"2"} and keywords.count() == 3


def test_postgres_keyword_queries_or_the_words_of_the_question() -> None:
    assert pg_query_text('Which "red" cars -or dogs?') == "which or red or cars or dogs"


@pytest.fixture(params=["folder", "s3"])
def object_store(request, tmp_path):
    if request.param == "folder":
        return FolderObjectStore(tmp_path / "objects")
    client = moto_client(request.getfixturevalue("s3_endpoint"))
    client.create_bucket(Bucket="objects-test")
    return S3ObjectStore("s3://objects-test/normalized", client)


def test_object_stores_keep_each_content_once(object_store) -> None:
    jpeg = jpeg_bytes(photo("coffee"))
    digest = object_store.put(jpeg)
    assert object_store.put(jpeg) == digest and object_store.has(digest)
    assert not object_store.has("0" * 64) and not object_store.has(None)
    assert object_store.read_bytes(digest) == jpeg
    small = object_store.open_image(digest, min_side=100)
    assert small.mode == "RGB" and min(small.size) >= 100
    assert small.size[0] < Image.open(io.BytesIO(jpeg)).size[0]


def test_a_postgres_password_is_never_shown() -> None:
    assert redacted("postgresql://dam:s3cret@db:5432/dam") == "postgresql://dam:***@db:5432/dam"
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:9.*DAM_STATE_URL") as failed:
        PostgresDatabase("postgresql://dam:s3cret@127.0.0.1:9/dam").connection()
    assert "s3cret" not in str(failed.value)


def _unit(seed: int, dim: int = 8) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def test_pgvector_fuses_both_rankings_in_sql_as_python_does(database_url) -> None:
    store = PgVectorStore(database_url, "fusion")
    words = PostgresKeywordIndex(PostgresDatabase(database_url))
    assert store.shares_database_with(words)
    store.ensure_compatible("test/model", 8)
    docs = [
        KeywordDocument(f"id{i}", "p" if i % 2 else "q", f"p/{i}.jpg", f"photo {i}", tag)
        for i, tag in enumerate(["cat", "dog", "cat dog", "", "cat", "", "dog", "cat"])
    ]
    store.upsert(
        [
            VectorRecord(d.vector_id, _unit(i), d.caption, {"partition": d.partition})
            for i, d in enumerate(docs)
        ]
    )
    words.upsert(docs)
    query = _unit(99)
    for where in (None, StoreFilter(partitions=("p",))):
        dense = [hit.id for hit in store.query(query, 6, where)]
        lexical = [vid for vid, _ in words.search("cat", 6, where.partitions if where else None)]
        expected = reciprocal_rank_fusion([dense, lexical], [1.0, 0.25])
        fused = store.hybrid_query(query, pg_query_text("cat"), 6, where, 0.25, 60)
        assert [hit.id for hit, _, _ in fused] == expected
        assert {hit.id for hit, by_meaning, _ in fused if by_meaning} == set(dense)
        assert {hit.id for hit, _, score in fused if score is not None} == set(lexical)


def test_pgvector_finds_the_nearest_within_a_narrow_filter(database_url) -> None:
    """pgvector filters after the HNSW search: a narrow filter is searched exactly."""
    store = PgVectorStore(database_url, "narrow")
    store.ensure_compatible("test/model", 8)
    store.upsert(
        [
            VectorRecord(f"id{i}", _unit(i), "", {"partition": "rare" if i < 3 else "common"})
            for i in range(2000)
        ]
    )
    hits = store.query(_unit(0), 5, StoreFilter(partitions=("rare",)))
    assert [hit.id for hit in hits][:1] == ["id0"] and len(hits) == 3


@pytest.fixture
def people_and_index(kind, tmp_path, request):
    """The people store and the face index a library on that profile uses."""
    from dam_pipeline.faces.people_store import PostgresPeopleStore, SqlitePeopleStore
    from dam_pipeline.vector_stores import ChromaVectorStore

    if kind == "local":
        return SqlitePeopleStore(tmp_path / "people.sqlite"), ChromaVectorStore(
            "faces", path=tmp_path / "chroma"
        )
    url = request.getfixturevalue("database_url")
    return PostgresPeopleStore(PostgresDatabase(url)), PgVectorStore(url, "faces")


def _synthetic_faces(people: int, each: int, seed: int = 3):
    """Unit descriptors: each person's faces close to their own random centre."""
    import numpy as np

    from dam_pipeline.faces.people_store import StoredFace, unit

    rng = np.random.default_rng(seed)
    faces = []
    for person in range(people):
        centre = unit(rng.normal(size=128))
        for n in range(each):
            vector = unit(centre + rng.normal(scale=0.012, size=128))
            key = f"p{person}_{n}.jpg"
            box = (0.1, 0.1, 0.3, 0.3)
            faces.append(
                StoredFace(f"f{person}-{n}", f"part{n % 2}", key, f"v-{key}", box, 80, 50.0,
                           0.9, b"jpeg", vector)
            )  # fmt: skip
    return faces


def test_people_are_grouped_named_and_forgotten_alike_in_both_stores(people_and_index) -> None:
    from dam_pipeline.faces.grouping import FaceNeighbours, assign_new_faces, regroup
    from dam_pipeline.vector_stores import VectorRecord

    people, index = people_and_index
    faces = _synthetic_faces(3, 4)
    for part in ("part0", "part1"):
        mine = [f for f in faces if f.partition == part]
        people.replace_photos(part, mine, keep_keys=[])
        index.ensure_compatible("faces/test", 128)
        index.upsert([VectorRecord(f.face_id, f.descriptor, "", {"partition": part, "key": f.key})
                      for f in mine])  # fmt: skip
        assign_new_faces(mine, people, FaceNeighbours(people, index))
    found = people.persons()
    assert sorted(p.faces for p in found) == [4, 4, 4]
    assert all(len({k.split("_")[0] for k in p.photos}) == 1 for p in found)  # one each
    first = next(p for p in found if p.photos[0].startswith("p0_"))
    people.name(first.person_id, "Ana")
    assert people.photos_with(people.known_names()["ana"]) == {
        (f.partition, f.key) for f in faces if f.key.startswith("p0_")
    }
    assert people.names_in_photos(["v-p0_1.jpg", "v-p1_1.jpg"]) == {"v-p0_1.jpg": ["Ana"]}
    # a face taken out never goes back; names survive regrouping
    new = people.detach("f0-3")
    regroup(people)
    assert people.person_of(["f0-3"])["f0-3"] == new
    assert people.person(first.person_id).name == "Ana"
    assert people.person(first.person_id).faces == 3
    # merging pins; forgetting keeps one averaged descriptor and deletes the faces
    second = next(p for p in people.persons() if p.photos[0].startswith("p1_"))
    people.merge(first.person_id, second.person_id)
    regroup(people)
    assert people.person(first.person_id).faces == 7
    gone = people.forget(first.person_id)
    assert len(gone) == 7 and len(people.forgotten()) == 1
    assert people.count() == 5
    assert people.delete_everything() == 5 and people.persons() == []


def test_one_face_grouper_at_a_time_in_both_stores(people_and_index) -> None:
    """A second grouper (another run's faces step, a regroup) waits until the first lets
    go; the index's writer lock is not involved."""
    import threading

    people, _ = people_and_index
    order: list[str] = []
    second_waiting = threading.Event()

    def second() -> None:
        second_waiting.set()
        with people.one_grouper():
            order.append("second")

    with people.one_grouper():
        thread = threading.Thread(target=second)
        thread.start()
        second_waiting.wait(5)
        thread.join(0.5)  # it cannot get in while the first holds it
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]
