"""ChromaDB: a folder on this machine (the default), served to every process by one local
server (``local_chroma``), or a Chroma server of your own (``DAM_CHROMA_URL``).

Identical vectors are kept out of the search graph. Chroma's HNSW links each node to its
nearest neighbours; many copies of one vector (the same photo under 150 names) are each
other's nearest at distance 0, fill every neighbour list of the group and cut the links
that lead out of it and into it, so the rest of the index becomes unreachable from there:
measured, 20 distinct photos indexed before 150 copies of another were found 0 times out
of 20 by their own vectors. Raising ``ef_search`` does not help; more neighbours per node
only moves the threshold.

So in each partition only one record of a group of identical vectors (the smallest id) is
in the searched collection; the others wait in a second collection (``<name>_copies``,
never searched by vector) pointing to it, and a hit on the representative brings its copies
with the same score. To callers every object is still one record with its own id.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from dam_pipeline.vector_stores.base import (
    IncompatibleIndexError,
    Metadata,
    StoreFilter,
    VectorHit,
    VectorRecord,
    reindex_hint,
)
from dam_pipeline.vector_stores.chroma_http import ChromaHttpClient
from dam_pipeline.vector_stores.flat_partitions import FlatPartitions, FlatRecord
from dam_pipeline.vector_stores.local_chroma import LocalServerError, server_url

T = TypeVar("T")

PAGE_SIZE = 1000
OVERFETCH_FROM = 20_000
"""From this many records on, a filtered query first asks for nearest records unfiltered."""
OVERFETCH = (600, 2000)
"""How many unfiltered nearest records are asked for, in turn, before falling back to
Chroma's filter. Measured at 1,000,000 records: a list of 600 / 1,000 / 2,000 costs p50 32 /
49 / 83 ms (its metadata, mostly); 600 holds the top 10 of a filter keeping 3% or more, and
2,000 those of one keeping about 1%, where Chroma's own filter takes 350-1,100 ms."""
LONGER_LIST_FROM = 200_000
"""Chroma's filter costs about 1 ms per 1,000 records whatever it keeps (95 ms at 100,000):
below this size it is quicker than the list of 2,000."""
SEARCH_EF = 300
"""The graph's search list (Chroma's default 100). Measured at 1,000,000 anchor-like
vectors: recall@10 0.885 / 0.935 / 0.952 / 0.97 at 100 / 150 / 200 / 300, p50 4.5-6.4 ms
each (``bench.scale --store chroma``). Chroma applies a change when it next loads the
collection (a local server restarts after ``idle_seconds``)."""
SIZES_TRUSTED_SECONDS = 30.0
"""How long a query trusts the collection sizes it last read. Chroma counts by scanning
(about 10 ms per 100,000 records: most of an unfiltered query's time at 1,000,000), and a
query needs the sizes only to choose its method and to know whether copies exist; this
process's own writes, and an empty index, are read again at once (copies of a photo that
another process adds show within this time; its other records at once)."""
EXACT_UP_TO = 250_000
EXACT_DATED_UP_TO = 75_000
"""A filter on partitions and dates that keeps at most this many records (the second figure
with date bounds) is answered by scanning them in the flat copy (``FlatPartitions``): exact,
where the graph's nearest records filtered here lost some of a small set's nearest (recall
0.90-0.94 from 1% to 5% at 1,000,000 records) and Chroma's own filter costs about a second
at that size whatever it keeps. Whole partitions scan at about 0.12 us a record, records
picked by date at about 0.9 us (scattered rows), so either limit costs about 30-70 ms. In
``bench.scale --store chroma`` at 1,000,000: a 10% prefix p95 21.8 ms, a 5% date range
58.6 ms, recall 1.0; a 30% date range goes through the graph (p95 83 ms, recall 0.97)."""
EXACT_SPARE = 10
"""Records asked of the scan beyond ``top_k``, for any it holds that Chroma no longer does."""
FLAT_SUFFIX = ".flat"
COPIES_SUFFIX = "_copies"
GROUP, COPY_OF, HAS_COPIES = "dam_vector_group", "dam_copy_of", "dam_has_copies"
"""Bookkeeping keys in the stored metadata; callers never see them."""
INTERNAL = (GROUP, COPY_OF, HAS_COPIES)


def vector_group(partition: str, vector: np.ndarray) -> str:
    """Records of one partition with exactly this vector form one group."""
    raw = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
    return hashlib.sha1(partition.encode() + b"\0" + raw).hexdigest()


def _public(meta: Metadata | None) -> Metadata:
    return {k: v for k, v in (meta or {}).items() if k not in INTERNAL}


def _flat_record(id_: str, vector: Any, meta: Metadata) -> FlatRecord:
    when = meta.get("date_ts")
    return FlatRecord(
        id_, str(meta.get("partition", "")), None if when is None else int(when), vector
    )


def _chunks(items: Sequence[Any], size: int = PAGE_SIZE) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _unreachable(exc: BaseException) -> bool:
    """The server did not answer at all (it stopped, or was killed)."""
    return isinstance(exc, httpx.TransportError | ConnectionError)


def _reconnecting(method: Callable[..., T]) -> Callable[..., T]:
    """For an index folder served by the local server: if the server is gone, start it again
    and retry once (it stops when idle, or may have been killed)."""

    @functools.wraps(method)
    def call(self: ChromaVectorStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if self.path is None or not _unreachable(exc):
                raise
            self._connect()
            return method(self, *args, **kwargs)

    return call


class ChromaVectorStore:
    """A collection (and its copies) on a Chroma server: ``url``, or the local server of the
    folder ``path`` (``local_chroma``), started on demand and shared by every process."""

    upsert_batch = 2000
    """Each write looks up the groups of identical vectors it touches: about 0.1 s at
    1,000,000 records however many it names, so a write of 256 records ran at 0.65 of
    Chroma's own add, 2,000 at (measured) its speed."""
    overfetch_from = OVERFETCH_FROM
    exact_up_to = EXACT_UP_TO
    exact_dated_up_to = EXACT_DATED_UP_TO

    def batch_writes(self) -> AbstractContextManager[None]:
        """Nothing to defer (the index is maintained as it is written); a folder indexed
        before the flat copy existed gets it filled here, once."""
        self._fill_flat()
        return nullcontext()

    def __init__(
        self,
        collection: str,
        path: Path | None = None,
        url: str | None = None,
        idle_seconds: float = 300.0,
    ) -> None:
        self.collection_name = collection
        self.path = None if url else path
        self.url = url or ""
        self.idle_seconds = idle_seconds
        if url is None and path is None:
            raise ValueError("A Chroma store needs a folder or a server URL.")
        self.flat = (
            FlatPartitions(Path(f"{self.path}{FLAT_SUFFIX}") / collection)
            if self.path is not None
            else None
        )
        """Exact search for narrow filters, beside an index folder (a server of the user's
        own may be shared by machines that do not share a folder: it has none)."""
        try:
            self._connect()
        except LocalServerError:
            raise
        except Exception as exc:
            if self.path is not None:
                raise ConnectionError(
                    f"The local Chroma server for {self.path} does not answer "
                    f"({type(exc).__name__}: {exc}); see {self.path}.server.log."
                ) from None
            raise ConnectionError(
                f"Could not reach the Chroma server at {url} ({type(exc).__name__}): start it "
                "(`chroma run --path … --port …`) or fix DAM_CHROMA_URL."
            ) from None
        self.location = url or str(path)

    def _connect(self) -> None:
        if self.path is not None:
            self.url = server_url(self.path, self.idle_seconds)
        self.client = ChromaHttpClient(self.url)
        self._open_collections()

    def _open_collections(self) -> None:
        def open_(name: str):
            return self.client.get_or_create_collection(name, metadata={"hnsw:space": "cosine"})

        self.collection = open_(self.collection_name)
        self.copies = open_(self.collection_name + COPIES_SUFFIX)
        if (self.collection.search_ef() or SEARCH_EF) < SEARCH_EF:
            self.collection.set_search_ef(SEARCH_EF)
        self._forget_sizes()
        # Every writer keeps the flat copy, so only an index from before it holds more than
        # its copy, and only an index folder removed by hand holds less.
        if (
            self.flat is not None
            and (not self.flat.complete or not self.flat.empty)
            and self._holds_nothing()
        ):
            with self._writing():
                if self._holds_nothing():  # again, now that no writer is half-way
                    self.flat.clear()

    def _holds_nothing(self) -> bool:
        return self.collection.count() + self.copies.count() == 0

    def _writing(self) -> AbstractContextManager[Any]:
        """Writers take turns on the collection and its flat copy together, so both end
        with the same vector for an id."""
        return self.flat.writing() if self.flat is not None else nullcontext()

    def _fill_flat(self) -> None:
        """Copy every record into the flat copy (an index from before it existed)."""
        if self.flat is None or self.flat.complete:
            return
        with self.flat.writing():
            if self.flat.complete:
                return
            for collection in (self.collection, self.copies):
                offset = 0
                while True:
                    page = collection.get(
                        include=["embeddings", "metadatas"], limit=PAGE_SIZE, offset=offset
                    )
                    self.flat.write(
                        [
                            _flat_record(id_, vector, meta or {})
                            for id_, vector, meta in zip(
                                page["ids"], page["embeddings"], page["metadatas"], strict=True
                            )
                        ]
                    )
                    if len(page["ids"]) < PAGE_SIZE:
                        break
                    offset += PAGE_SIZE
            self.flat.mark_complete()

    def _forget_sizes(self) -> None:
        self._sizes: tuple[int, int] | None = None
        self._sizes_read_at = 0.0

    def _recent_sizes(self) -> tuple[int, int]:
        """(searched records, copies), read at most every ``SIZES_TRUSTED_SECONDS``."""
        sizes, now = self._sizes, time.monotonic()
        if sizes is None or sizes[0] == 0 or now - self._sizes_read_at > SIZES_TRUSTED_SECONDS:
            sizes = (self.collection.count(), self.copies.count())
            self._sizes, self._sizes_read_at = sizes, now
        return sizes

    @_reconnecting
    def ensure_compatible(self, embedder: str, dimension: int) -> None:
        meta = dict(self.collection.metadata or {})
        built_with, built_dim = meta.get("embedder"), meta.get("dimension")
        if built_with is None:
            if self.collection.count():
                return  # an index from before models were recorded: trust it
            meta.update({"embedder": embedder, "dimension": dimension})
            meta.pop("hnsw:space", None)  # fixed at creation; chroma refuses to "change" it
            self.collection.modify(metadata=meta)
            return
        if built_with != embedder or int(built_dim) != dimension:
            raise IncompatibleIndexError(
                reindex_hint(built_with, int(built_dim), embedder, dimension)
            )

    @_reconnecting
    def binding(self) -> tuple[str, int] | None:
        meta = self.collection.metadata or {}
        if meta.get("embedder") is None:
            return None
        return str(meta["embedder"]), int(meta["dimension"])

    # Writing: every write regroups the groups it touches.

    @_reconnecting
    def upsert(self, records: Sequence[VectorRecord]) -> None:
        self._forget_sizes()
        with self._writing():
            for batch in _chunks(records, self.client.get_max_batch_size()):
                self._regroup(list(batch), [])

    @_reconnecting
    def delete(self, ids: Sequence[str], partition: str = "") -> None:
        self._forget_sizes()
        with self._writing():
            for chunk in _chunks(list(dict.fromkeys(ids))):
                self._regroup([], list(chunk))

    def _stored(self, collection, **query: Any) -> dict[str, Metadata]:
        got = collection.get(include=["metadatas"], **query)
        return {
            id_: meta or {} for id_, meta in zip(got["ids"], got["metadatas"] or [], strict=True)
        }

    def _regroup(self, incoming: list[VectorRecord], removed: list[str]) -> None:
        """Write ``incoming``, remove ``removed``, and leave every group they touch with its
        smallest id searchable and the rest as its copies."""
        written = {r.id: r for r in incoming}
        changed = list(written) + removed
        dropped = set(removed)
        any_copies = self.copies.count() > 0  # the usual case: none, and nothing to look up
        before_main = self._stored(self.collection, ids=changed) if changed else {}
        before_copies = self._stored(self.copies, ids=changed) if changed and any_copies else {}
        new_group = {
            r.id: vector_group(str(r.metadata.get("partition", "")), r.vector) for r in incoming
        }
        groups = set(new_group.values()) | {
            meta[GROUP]
            for meta in (*before_main.values(), *before_copies.values())
            if meta.get(GROUP)
        }
        # The other members of those groups, wherever they are now.
        where_main: dict[str, Metadata] = {}
        where_copies: dict[str, Metadata] = {}
        for chunk in _chunks(sorted(groups)):
            condition = {GROUP: {"$in": list(chunk)}}
            where_main.update(self._stored(self.collection, where=condition))
            if any_copies:
                where_copies.update(self._stored(self.copies, where=condition))
        members: dict[str, set[str]] = {group: set() for group in groups}
        for id_, meta in (*where_main.items(), *where_copies.items()):
            if id_ not in written and id_ not in dropped:
                members.setdefault(meta[GROUP], set()).add(id_)
        for id_, group in new_group.items():
            members[group].add(id_)
        representative = {id_: min(ids) for ids in members.values() if ids for id_ in ids}

        def wanted(id_: str, meta: Metadata, group: str) -> tuple[bool, Metadata]:
            rep = representative[id_]
            out = {**_public(meta), GROUP: group}
            if rep == id_:
                out[HAS_COPIES] = len(members[group]) > 1
            else:
                out[COPY_OF] = rep
            return rep == id_, out

        to_main: list[tuple[str, Any, str, Metadata]] = []
        to_copies: list[tuple[str, Any, str, Metadata]] = []
        for record in incoming:
            searchable, meta = wanted(record.id, record.metadata, new_group[record.id])
            # Chroma's upsert merges metadata: a key the record no longer has is deleted
            # by naming it with None (a place after DAM_LOCATION=off, say)
            before = (before_main if searchable else before_copies).get(record.id, {})
            meta = {**{key: None for key in before if key not in meta}, **meta}
            row = (record.id, record.vector, record.document, meta)
            (to_main if searchable else to_copies).append(row)
        # Members not written now move only if their role or bookkeeping changed.
        moving = []
        for id_, meta in (*where_main.items(), *where_copies.items()):
            if id_ in written or id_ in dropped:
                continue
            searchable, target = wanted(id_, meta, meta[GROUP])
            if (id_ in where_main) != searchable or any(
                meta.get(key) != target.get(key) for key in INTERNAL
            ):
                moving.append((id_, searchable, target))
        if moving:
            full = self._fetch_raw([id_ for id_, _, _ in moving])
            for id_, searchable, target in moving:
                if id_ not in full:  # deleted meanwhile by another writer of a served index
                    continue
                vector, _, document = full[id_]
                (to_main if searchable else to_copies).append((id_, vector, document, target))

        gone_from_main = dropped & set(before_main) | {
            id_ for id_, *_ in to_copies if id_ in before_main or id_ in where_main
        }
        gone_from_copies = dropped & set(before_copies) | {
            id_ for id_, *_ in to_main if id_ in before_copies or id_ in where_copies
        }
        for collection, rows in ((self.collection, to_main), (self.copies, to_copies)):
            if rows:
                collection.upsert(
                    ids=[r[0] for r in rows],
                    embeddings=np.stack([np.asarray(r[1]) for r in rows]).astype(np.float32),
                    documents=[r[2] for r in rows],
                    metadatas=[r[3] for r in rows],
                )
        for collection, ids in ((self.collection, gone_from_main), (self.copies, gone_from_copies)):
            if ids:
                collection.delete(ids=sorted(ids))
        if self.flat is not None:  # after the collection: the copy never holds more than it
            self.flat.write([_flat_record(r.id, r.vector, r.metadata) for r in incoming])
            self.flat.remove(removed)

    # Reading: copies come with their representative.

    @_reconnecting
    def list_partition(self, partition: str) -> dict[str, Metadata]:
        found: dict[str, Metadata] = {}
        for collection in (self.collection, self.copies):
            offset = 0
            while True:
                page = collection.get(
                    where={"partition": partition},
                    include=["metadatas"],
                    limit=PAGE_SIZE,
                    offset=offset,
                )
                found.update(
                    (id_, _public(meta))
                    for id_, meta in zip(page["ids"], page["metadatas"] or [], strict=True)
                )
                if len(page["ids"]) < PAGE_SIZE:
                    break
                offset += PAGE_SIZE
        return found

    @_reconnecting
    def query(
        self, vector: np.ndarray, top_k: int, where: StoreFilter | None = None
    ) -> list[VectorHit]:
        total, copies = self._recent_sizes()
        if total == 0 or top_k <= 0:
            return []
        exact = self._exact(vector, top_k, where)
        if exact is not None:
            return exact
        hits = self._filtered(vector, top_k, total, where)
        if copies:
            hits = self._with_copies(vector, hits, top_k, where)
        return [
            VectorHit(id=h.id, score=h.score, document=h.document, metadata=_public(h.metadata))
            for h in hits[:top_k]
        ]

    def _exact(
        self, vector: np.ndarray, top_k: int, where: StoreFilter | None
    ) -> list[VectorHit] | None:
        """A filter on partitions and dates that keeps few records (``EXACT_UP_TO``),
        answered by scanning them in the flat copy (copies included: a scan has no graph to
        spoil); None when it does not apply."""
        if (
            self.flat is None
            or where is None
            or where.places
            or where.near is not None
            or (not where.partitions and where.date_from is None and where.date_to is None)
            or not self.flat.complete
        ):
            return None
        dated = where.date_from is not None or where.date_to is not None
        nearest = self.flat.nearest(
            vector,
            top_k + EXACT_SPARE,
            where.partitions,
            where.date_from,
            where.date_to,
            at_most=self.exact_dated_up_to if dated else self.exact_up_to,
        )
        if nearest is None:
            return None
        ids = [id_ for id_, _ in nearest]
        stored = self._stored_documents(self.collection, ids)
        # the rest are copies (even ones another process added since the sizes were read)
        stored.update(self._stored_documents(self.copies, [i for i in ids if i not in stored]))
        hits = [
            VectorHit(id=id_, score=score, document=stored[id_][1], metadata=stored[id_][0])
            for id_, score in nearest
            if id_ in stored and where.accepts(stored[id_][0])
        ]
        return hits[:top_k]

    def _stored_documents(self, collection, ids: list[str]) -> dict[str, tuple[Metadata, str]]:
        if not ids:
            return {}
        got = collection.get(ids=ids, include=["metadatas", "documents"])
        return {
            id_: (_public(meta), doc or "")
            for id_, meta, doc in zip(got["ids"], got["metadatas"], got["documents"], strict=True)
        }

    def _filtered(
        self, vector: np.ndarray, top_k: int, total: int, where: StoreFilter | None
    ) -> list[VectorHit]:
        """The nearest ``top_k`` passing ``where``. Chroma's own filter costs in proportion
        to the whole collection, whatever it keeps (about 100 ms at 100,000 records, 0.35-1.1 s
        at 1,000,000), so a large collection is first asked for its nearest records
        unfiltered (``OVERFETCH``) and those are filtered here: when at least ``top_k`` pass,
        they are the filtered nearest (anything nearer that passes would be among them, as
        far as the graph's search finds it). A filter that leaves too few (judged by how
        many passed the list before) falls back to Chroma's filter."""
        condition = where.where() if where else None
        if condition is None or total < self.overfetch_from:
            return self._search(vector, top_k, condition)
        asked, kept = 0, []
        for n in OVERFETCH if total >= LONGER_LIST_FROM else OVERFETCH[:1]:
            if asked and len(kept) * n / asked < 1.5 * top_k:
                break  # at this rate the longer list would not hold enough either
            asked = min(n, total)
            nearest = self._search(vector, asked, None)
            kept = [h for h in nearest if where is not None and where.accepts(h.metadata)]
            if len(kept) >= top_k or asked >= total:
                return kept[:top_k]
        return self._search(vector, top_k, condition)

    def _search(self, vector: np.ndarray, n: int, where: dict | None) -> list[VectorHit]:
        result = self.collection.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=n,
            where=where,
            include=["metadatas", "documents", "distances"],
        )
        return [
            VectorHit(id=id_, score=1.0 - float(distance), document=doc or "", metadata=meta or {})
            for id_, distance, doc, meta in zip(
                result["ids"][0],
                result["distances"][0],
                result["documents"][0],
                result["metadatas"][0],
                strict=True,
            )
        ]

    def _with_copies(
        self, vector: np.ndarray, hits: list[VectorHit], top_k: int, where: StoreFilter | None
    ) -> list[VectorHit]:
        """Each representative's copies that match the filter, with its score. A date filter
        may exclude a representative whose copies match (copies of one photo can differ in
        date): representatives with copies are then searched by partition alone too."""
        by_id = {h.id: h for h in hits}
        if where is not None and (where.date_from is not None or where.date_to is not None):
            grouped = StoreFilter(partitions=where.partitions).conditions()
            condition = {"$and": [*grouped, {HAS_COPIES: True}]} if grouped else {HAS_COPIES: True}
            for hit in self._search(vector, top_k, condition):
                by_id.setdefault(hit.id, hit)
        reps = [h for h in by_id.values() if h.metadata.get(HAS_COPIES)]
        found = list(hits)  # representatives found under the whole filter
        if reps:
            conditions = [{COPY_OF: {"$in": [h.id for h in reps]}}]
            if where is not None:
                conditions += where.conditions()
            copy_where = conditions[0] if len(conditions) == 1 else {"$and": conditions}
            got = self.copies.get(where=copy_where, include=["metadatas", "documents"])
            score = {h.id: h.score for h in reps}
            found += [
                VectorHit(id=id_, score=score[meta[COPY_OF]], document=doc or "", metadata=meta)
                for id_, meta, doc in zip(
                    got["ids"], got["metadatas"], got["documents"], strict=True
                )
            ]
        return sorted(found, key=lambda h: (-h.score, h.id))

    def _fetch_raw(self, ids: Sequence[str]) -> dict[str, tuple[np.ndarray, Metadata, str]]:
        out: dict[str, tuple[np.ndarray, Metadata, str]] = {}
        for collection in (self.collection, self.copies):
            wanted = [id_ for id_ in ids if id_ not in out]
            for chunk in _chunks(wanted):
                got = collection.get(
                    ids=list(chunk), include=["embeddings", "metadatas", "documents"]
                )
                for id_, vector, meta, doc in zip(
                    got["ids"], got["embeddings"], got["metadatas"], got["documents"], strict=True
                ):
                    out[id_] = (np.asarray(vector, dtype=np.float32), meta or {}, doc or "")
        return out

    @_reconnecting
    def fetch(
        self, items: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[np.ndarray, Metadata, str]]:
        if not items:
            return {}
        raw = self._fetch_raw(list(dict.fromkeys(vector_id for vector_id, _ in items)))
        return {id_: (vector, _public(meta), doc) for id_, (vector, meta, doc) in raw.items()}

    @_reconnecting
    def count(self) -> int:
        return self.collection.count() + self.copies.count()

    @_reconnecting
    def reset(self) -> None:
        """Drop every vector (and the model binding): the way to re-index from scratch."""
        with self._writing():
            self.client.delete_collection(self.collection_name)
            self.client.delete_collection(self.collection_name + COPIES_SUFFIX)
            if self.flat is not None:
                self.flat.clear()
            self._open_collections()
