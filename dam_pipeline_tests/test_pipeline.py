"""The whole asset graph through Dagster on real photos, then queries against real Chroma."""

from __future__ import annotations

import shutil

from dam_pipeline import components
from dam_pipeline.api import ask, search, similar
from dam_pipeline.definitions import build_definitions
from dam_pipeline.keys import encode_prefix
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import CAT, IngestedLibrary, ingest, write_library

SPACE = encode_prefix("space ✨")
PETS = encode_prefix("pets & animals")


def test_every_asset_is_materialized_with_counts(shared_library: IngestedLibrary) -> None:
    results = shared_library.results
    assert sorted(results) == sorted(["kitchen", PETS, "posters", "signs", SPACE, "street"])
    pets = results[PETS]
    assert pets["raw_images"]["seen"] == 3 and pets["raw_images"]["ignored_not_image"] == 1
    assert pets["normalized_images"]["quarantined"] == 1
    assert "broken.jpg" in pets["normalized_images"]["quarantine"]
    assert pets["vector_index"]["indexed"] == 2
    assert "![" in pets["captions"]["preview"]  # thumbnails in the UI
    assert results[SPACE]["vector_index"]["indexed"] == 3


def test_search_and_ask(shared_library: IngestedLibrary) -> None:
    settings = shared_library.settings
    assert search("a cat", settings=settings)[0].key.startswith("pets & animals/chelsea")
    assert search("a cup of coffee", settings=settings)[0].key == "kitchen/coffee.jpg"
    only_space = search("a cat", prefixes=["space ✨"], settings=settings)
    assert all(hit.key.startswith("space ✨/") for hit in only_space)

    answer = ask("Is there a cat?", settings=settings)
    assert answer.cited and answer.cited_hits[0].key in (CAT, "pets & animals/chelsea copy.jpg")
    assert "[S1]" in answer.text and "chelsea" in answer.text


def test_rematerializing_is_incremental_and_creates_no_duplicates(
    shared_library: IngestedLibrary, instance
) -> None:
    settings = shared_library.settings
    count = components.open_vector_store(settings).count()
    again = ingest(settings, instance)
    assert components.open_vector_store(settings).count() == count == 9
    for stage in ("captions", "embeddings"):
        assert all(r[stage]["computed"] == 0 for r in again.values())
    assert again[PETS]["captions"]["reused"] == 2
    assert all(r["vector_index"]["upserted"] == 0 for r in again.values())


def test_changed_and_deleted_objects_are_synced(settings: Settings, instance) -> None:
    root = settings.layout.library
    write_library(root, {"kitchen/coffee.jpg": "coffee", "pets/cat.jpg": "chelsea"})
    write_library(root, {"pets/astronaut.jpg": "astronaut", "pets/rocket.jpg": "rocket"})
    ingest(settings, instance)
    write_library(root, {"kitchen/coffee.jpg": "chelsea", "kitchen/second.jpg": "coffee"})
    (root / "pets" / "astronaut.jpg").unlink()
    results = ingest(settings, instance)

    kitchen = results["kitchen"]
    assert kitchen["captions"]["computed"] == 0  # both images are already known by content
    assert kitchen["vector_index"]["upserted"] == 2
    pets = results["pets"]["vector_index"]
    assert pets["deleted"] == 1 and not pets["deletion_blocked"]
    assert components.open_vector_store(settings).count() == 4
    keys = [hit.key for hit in search("a cat", top_k=10, settings=settings)]
    assert "pets/astronaut.jpg" not in keys
    assert set(keys[:2]) == {"kitchen/coffee.jpg", "pets/cat.jpg"}


def test_mass_disappearance_deletes_nothing(settings: Settings, instance) -> None:
    write_library(settings.layout.library, {f"kitchen/copy{i}.jpg": "coffee" for i in range(3)})
    ingest(settings, instance)
    before = components.open_vector_store(settings).count()
    for path in (settings.layout.library / "kitchen").glob("copy*.jpg"):
        path.unlink()
    results = ingest(settings, instance)
    assert results["kitchen"]["vector_index"]["deletion_blocked"] is True
    assert results["kitchen"]["vector_index"]["would_delete"] == 3
    assert components.open_vector_store(settings).count() == before


def test_query_job_shows_the_answer_as_markdown(shared_library: IngestedLibrary, instance) -> None:
    job = build_definitions(shared_library.settings).resolve_job_def("query_job")
    result = job.execute_in_process(
        instance=instance,
        run_config={
            "question": "a cup of coffee",
            "top_k": 3,
        },
    )
    output = result.output_for_node("answer_question")
    assert output["hits"][0]["key"] == "kitchen/coffee.jpg"
    (metadata,) = [
        event.event_specific_data.metadata
        for event in result.all_events
        if event.event_type_value == "STEP_OUTPUT"
    ]
    markdown = metadata["answer"].value
    assert "kitchen/coffee.jpg" in markdown and "data:image/jpeg;base64" in markdown
    hits = metadata["hits"]
    assert [c.name for c in hits.schema.columns][:3] == ["source", "key", "relevance"]
    assert hits.records[0].data["key"] == "kitchen/coffee.jpg"
    assert metadata["dagster/row_count"].value == len(hits.records) == len(output["hits"])


def test_a_new_captioner_version_recaptions_only_what_it_affects(
    settings: Settings, instance
) -> None:
    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea"})
    ingest(settings, instance)
    changed = settings.replace(ocr="off" if settings.ocr != "off" else "always")
    recaptioned = ingest(changed, instance)
    assert recaptioned["pets"]["captions"]["computed"] == 1  # the new fingerprint misses the cache
    again = ingest(changed, instance)
    assert all(r["captions"]["computed"] == 0 for r in again.values())
    assert components.open_vector_store(settings).count() == 1


def test_vector_ids_survive_moving_the_data_directory(settings: Settings, instance) -> None:
    """Ids name the library (DAM_LIBRARY_ID or the bucket) and the key, not a disk path."""
    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea"})
    ingest(settings, instance)
    moved = settings.data_dir.parent / "moved"
    shutil.copytree(settings.data_dir, moved)
    elsewhere = Settings(data_dir=moved, workers=2)
    assert [h.key for h in search("a cat", settings=elsewhere)] == ["pets/cat.jpg"]
    assert similar(key="pets/cat.jpg", settings=elsewhere) == []  # found: nothing else to show


def test_a_new_library_id_reindexes_under_new_ids_without_duplicates(
    settings: Settings, instance
) -> None:
    """The one-time migration from path-based ids: the next ingest replaces every vector."""
    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea", "pets/c.jpg": "coffee"})
    ingest(settings, instance)
    before = set(components.open_vector_store(settings).list_partition("pets"))
    results = ingest(settings.replace(library_id="renamed"), instance)
    after = set(components.open_vector_store(settings).list_partition("pets"))
    assert len(after) == 2 and not before & after
    assert results["pets"]["vector_index"]["deleted"] == 2
