"""The whole asset graph through Dagster on real photos, then queries against real Chroma."""

from __future__ import annotations

import dagster as dg
import pytest

from dam_pipeline.api import ask, open_index, search
from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.jobs import register_prefixes
from dam_pipeline.keys import encode_prefix
from dam_pipeline.settings import Settings
from dam_pipeline.sources import open_source
from dam_pipeline_tests.conftest import write_library

LIBRARY = {
    "pets/chelsea.jpg": "chelsea",
    "kitchen/coffee.jpg": "coffee",
    "space ✨/2024/rocket.jpg": "rocket",
    "space ✨/astronaut.jpg": "astronaut",
    "pets/notes.txt": b"not an image, ignored by name",
    "pets/broken.jpg": b"\xff\xd8\xff\xe0 this is not really a jpeg",
}


def ingest(settings: Settings, instance: dg.DagsterInstance) -> dict[str, dict]:
    """Register the prefixes and run ingest_job for each; returns vector_index metadata."""
    defs = build_definitions(settings)
    _, keys = register_prefixes(instance, open_source(settings.source))
    job = defs.resolve_job_def("ingest_job")
    results = {}
    for key in keys:
        result = job.execute_in_process(partition_key=key, instance=instance)
        assert result.success
        results[key] = {
            asset: {k: v.value for k, v in m.metadata.items()}
            for asset in (
                "raw_images",
                "normalized_images",
                "captions",
                "embeddings",
                "vector_index",
            )
            for m in result.asset_materializations_for_node(asset)
        }
    return results


@pytest.fixture
def library(settings: Settings) -> Settings:
    write_library(settings.layout.library, LIBRARY)
    return settings


def test_materialize_all_assets_then_search_and_ask(library: Settings, instance) -> None:
    results = ingest(library, instance)
    assert sorted(results) == ["kitchen", "pets", encode_prefix("space ✨")]
    pets = results["pets"]
    assert pets["raw_images"]["seen"] == 2 and pets["raw_images"]["ignored_not_image"] == 1
    assert pets["normalized_images"]["quarantined"] == 1
    assert "broken.jpg" in pets["normalized_images"]["quarantine"]
    assert pets["vector_index"]["indexed"] == 1
    assert "![" in pets["captions"]["preview"]  # thumbnails in the UI
    assert results[encode_prefix("space ✨")]["vector_index"]["indexed"] == 2

    assert search("a cat", settings=library)[0].key == "pets/chelsea.jpg"
    assert search("a cup of coffee", settings=library)[0].key == "kitchen/coffee.jpg"
    only_space = search("a cat", prefixes=["space ✨"], settings=library)
    assert {hit.key for hit in only_space} <= {"space ✨/2024/rocket.jpg", "space ✨/astronaut.jpg"}

    answer = ask("Is there a cat?", settings=library)
    assert answer.cited and answer.cited_hits[0].key == "pets/chelsea.jpg"
    assert "[S1]" in answer.text and "chelsea" in answer.text


def test_rematerializing_is_incremental_and_creates_no_duplicates(
    library: Settings, instance
) -> None:
    ingest(library, instance)
    count = open_index(library).count()
    again = ingest(library, instance)
    assert open_index(library).count() == count == 4
    for stage in ("captions", "embeddings"):
        assert all(r[stage]["computed"] == 0 for r in again.values())
    assert again["pets"]["captions"]["reused"] == 1
    assert all(r["vector_index"]["upserted"] == 0 for r in again.values())


def test_changed_and_deleted_objects_are_synced(library: Settings, instance) -> None:
    ingest(library, instance)
    root = library.layout.library
    write_library(root, {"kitchen/coffee.jpg": "chelsea", "kitchen/second.jpg": "coffee"})
    (root / "space ✨" / "astronaut.jpg").unlink()
    results = ingest(library, instance)

    kitchen = results["kitchen"]
    assert kitchen["captions"]["computed"] == 0  # both images are already known by content
    assert kitchen["vector_index"]["upserted"] == 2
    space = results[encode_prefix("space ✨")]["vector_index"]
    assert space["deleted"] == 1 and not space["deletion_blocked"]
    assert open_index(library).count() == 4
    keys = [hit.key for hit in search("a cat", top_k=10, settings=library)]
    assert "space ✨/astronaut.jpg" not in keys
    assert set(keys[:2]) == {"kitchen/coffee.jpg", "pets/chelsea.jpg"}


def test_mass_disappearance_deletes_nothing(library: Settings, instance) -> None:
    write_library(library.layout.library, {f"kitchen/copy{i}.jpg": "coffee" for i in range(3)})
    ingest(library, instance)
    before = open_index(library).count()
    for path in (library.layout.library / "kitchen").glob("copy*.jpg"):
        path.unlink()
    results = ingest(library, instance)
    assert results["kitchen"]["vector_index"]["deletion_blocked"] is True
    assert results["kitchen"]["vector_index"]["would_delete"] == 3
    assert open_index(library).count() == before


def test_query_job_shows_the_answer_as_markdown(library: Settings, instance) -> None:
    ingest(library, instance)
    job = build_definitions(library).resolve_job_def("query_job")
    result = job.execute_in_process(
        instance=instance,
        run_config={
            "ops": {"answer_question": {"config": {"question": "a cup of coffee", "top_k": 3}}}
        },
    )
    output = result.output_for_node("answer_question")
    assert output["hits"][0]["key"] == "kitchen/coffee.jpg"
    (materialization,) = [
        event.event_specific_data.metadata
        for event in result.all_events
        if event.event_type_value == "STEP_OUTPUT"
    ]
    markdown = materialization["answer"].value
    assert "kitchen/coffee.jpg" in markdown and "data:image/jpeg;base64" in markdown


def test_a_new_captioner_version_recaptions_only_what_it_affects(
    library: Settings, instance
) -> None:
    import dataclasses

    ingest(library, instance)
    changed = dataclasses.replace(library, ocr="off" if library.ocr != "off" else "always")
    recaptioned = ingest(changed, instance)
    assert recaptioned["pets"]["captions"]["computed"] == 1  # the new fingerprint misses the cache
    again = ingest(changed, instance)
    assert all(r["captions"]["computed"] == 0 for r in again.values())
    assert open_index(library).count() == 4
