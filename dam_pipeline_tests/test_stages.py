"""Fast tests of the stages' pure parts and of the stage functions on a few real photos,
without Dagster: the sync plan, rank fusion, photo dates, captioning and embedding."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dam_pipeline import components
from dam_pipeline.cache import SqliteContentCache
from dam_pipeline.imaging import FolderObjectStore
from dam_pipeline.manifests import Manifest, NormalizedImage, RawImage
from dam_pipeline.retrieval import reciprocal_rank_fusion
from dam_pipeline.settings import Settings
from dam_pipeline.sources import LocalFolderSource
from dam_pipeline.stages import (
    anything_new,
    caption_partition,
    embed_partition,
    list_raw_images,
    normalize_partition,
)
from dam_pipeline.stages.vector_index import photo_date, plan_sync
from dam_pipeline_tests.conftest import write_library


def meta(key: str, caption: str = "a cat") -> dict:
    return {"key": key, "caption": caption}


@pytest.mark.parametrize(
    ("desired", "existing", "listed", "failed", "expected"),
    [
        # new object: upsert; unchanged: nothing
        ({"a": meta("a"), "b": meta("b")}, {"a": meta("a")}, {"a", "b"}, set(), (["b"], [], False)),
        # changed metadata: upsert again
        ({"a": meta("a", "a dog")}, {"a": meta("a")}, {"a"}, set(), (["a"], [], False)),
        # one of three gone: deleted
        (
            {"a": meta("a"), "b": meta("b")},
            {"a": meta("a"), "b": meta("b"), "c": meta("c")},
            {"a", "b"},
            set(),
            ([], ["c"], False),
        ),
        # still listed but now quarantined: always removed
        ({}, {"a": meta("a")}, {"a"}, set(), ([], ["a"], False)),
        # a failed caption keeps its old vector until the retry
        ({}, {"a": meta("a")}, {"a"}, {"a"}, ([], [], False)),
        # two of three gone at once: refused, nothing of it deleted
        (
            {"a": meta("a")},
            {"a": meta("a"), "b": meta("b"), "c": meta("c")},
            {"a"},
            set(),
            ([], [], True),
        ),
    ],
)
def test_sync_plan(desired, existing, listed, failed, expected) -> None:
    plan = plan_sync(desired, existing, listed, failed, max_delete_share=0.5)
    assert (plan.upsert, sorted(plan.delete), plan.deletion_blocked) == expected
    if plan.deletion_blocked:
        assert plan.would_delete == 2 and {"b", "c"} <= plan.kept


def test_a_blocked_sync_still_removes_quarantined_objects() -> None:
    existing = {k: meta(k) for k in "abcd"}
    plan = plan_sync({}, existing, listed_keys={"d"}, failed=set(), max_delete_share=0.5)
    assert plan.deletion_blocked and plan.delete == ["d"] and plan.would_delete == 3


@pytest.mark.parametrize(
    ("rankings", "weights", "expected"),
    [
        ([["a", "b", "c"]], None, ["a", "b", "c"]),
        ([["a", "b"], ["b", "c"]], [1.0, 1.0], ["b", "a", "c"]),
        ([["a", "b", "c", "d"], ["d"]], [1.0, 1.0], ["d", "a", "b", "c"]),
        ([["a", "b"], ["b", "c"]], [1.0, 0.0], ["a", "b", "c"]),
        ([[], ["x"]], None, ["x"]),
    ],
)
def test_reciprocal_rank_fusion(rankings, weights, expected) -> None:
    assert reciprocal_rank_fusion(rankings, weights) == expected


@pytest.mark.parametrize(
    ("taken", "modified", "expected"),
    [
        (
            "2019-06-01T08:30:00",
            "2024-01-01T00:00:00+00:00",
            datetime(2019, 6, 1, 8, 30, tzinfo=UTC),
        ),
        (None, "2024-01-01T00:00:00+00:00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("not a date", "2024-01-01T00:00:00+00:00", datetime(2024, 1, 1, tzinfo=UTC)),
        (None, "", None),
    ],
)
def test_photo_date_prefers_the_date_taken(taken, modified, expected) -> None:
    assert photo_date(taken, modified) == expected


@pytest.fixture
def normalized(settings: Settings):
    """Three objects through raw_images and normalized_images: two photos, one broken."""
    write_library(
        settings.layout.library,
        {"p/cat.jpg": "chelsea", "p/coffee.jpg": "coffee", "p/broken.jpg": b"\xff\xd8 nope"},
    )
    source = LocalFolderSource(settings.layout.library)
    objects = FolderObjectStore(settings.layout.objects)
    raw = list_raw_images(source, "p", workers=1)
    return normalize_partition(source, raw, objects, max_side=512, workers=1), objects


def test_caption_partition_accounts_for_every_object_and_reuses_the_cache(
    settings: Settings, normalized
) -> None:
    manifest, objects = normalized
    cache = SqliteContentCache(settings.layout.cache)
    captioner = components.build_captioner(settings)
    first = caption_partition(manifest, objects, captioner, cache)
    statuses = {r.key: r.status for r in first}
    assert statuses == {"p/cat.jpg": "ok", "p/coffee.jpg": "ok", "p/broken.jpg": "quarantined"}
    assert "cat" in first.by_key()["p/cat.jpg"].caption
    assert first.summary["computed"] == 2 and first.summary["seen"] == 3
    again = caption_partition(manifest, objects, captioner, cache)
    assert again.summary["computed"] == 0 and again.summary["reused"] == 2


def test_embed_partition_embeds_each_distinct_text_once(settings: Settings, normalized) -> None:
    manifest, objects = normalized
    cache = SqliteContentCache(settings.layout.cache)
    captions = caption_partition(manifest, objects, components.build_captioner(settings), cache)
    embedder = components.build_embedder(settings)
    first = embed_partition(captions, embedder, cache, objects)
    assert first.summary["computed"] == 2 and first.summary["dimension"] == 384
    ok = [r for r in first if r.status == "ok"]
    assert {r.embedder for r in ok} == {embedder.fingerprint}
    assert cache.get_vectors(embedder.fingerprint, [r.input_hash for r in ok]).keys() == {
        r.input_hash for r in ok
    }
    assert embed_partition(captions, embedder, cache, objects).summary["computed"] == 0


def _raw(key: str, version: str = "v1") -> RawImage:
    return RawImage(key=key, size=1, last_modified="2026-01-01T00:00:00+00:00", version=version)


def _normalized(key: str, version: str = "v1", video_key: str = "") -> NormalizedImage:
    return NormalizedImage(key=key, version=version, status="ok", video_key=video_key)


@pytest.mark.parametrize(
    ("listed", "before", "new"),
    [
        ([_raw("a.jpg")], None, True),  # first run
        ([], None, False),  # an empty prefix: nothing to load models for
        ([_raw("a.jpg")], [_normalized("a.jpg")], False),  # unchanged
        ([_raw("a.jpg", "v2")], [_normalized("a.jpg")], True),  # changed bytes
        ([_raw("a.jpg"), _raw("b.jpg")], [_normalized("a.jpg")], True),  # an upload
        ([_raw("a.jpg")], [_normalized("a.jpg"), _normalized("gone.jpg")], False),  # a deletion
        ([_raw("v.mp4")], [_normalized("v.mp4#1", video_key="v.mp4")], False),  # a video's shots
    ],
)
def test_models_are_loaded_early_only_when_something_is_new(listed, before, new) -> None:
    previous = None if before is None else Manifest(records=before)
    assert anything_new(Manifest(records=listed), previous) is new
