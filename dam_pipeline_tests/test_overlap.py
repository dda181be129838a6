"""normalized_images and captions in one step: a remote captioner takes images while the
partition is still being decoded; either asset can still be materialized alone; every
object is captioned, quarantined or counted, and an unchanged re-run computes nothing."""

from __future__ import annotations

import time

import dagster as dg
import pytest

from dam_pipeline import components, stages
from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.ingest import materializations
from dam_pipeline.defs.instance import register_prefixes
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, write_library
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion
from dam_pipeline_tests.test_incremental import variants
from dam_pipeline_tests.test_vision_captioners import GOOD


@pytest.fixture
def server():
    with ScriptedHTTPServer(lambda m, p, body: (200, chat_completion(GOOD), {})) as running:
        yield running


@pytest.fixture
def remote(settings: Settings, server) -> Settings:
    return settings.replace(
        captioner="openai", captioner_model="llava", captioner_base_url=f"{server.url}/v1"
    )


def test_captioning_starts_before_the_partition_is_decoded(remote: Settings, server) -> None:
    """Decoding stops after the first 8 objects until the captioner has been sent 8
    images: this only finishes if captioning runs while the partition is decoded."""
    files = variants(20)
    write_library(remote.layout.library, files)
    source, state = components.open_source(remote), components.open_state(remote)
    captioner = components.build_captioner(remote)
    assert captioner.batch_size == 8
    raw = stages.list_raw_images(source, "album/")
    handed: list[int] = []

    def normalize(ready):
        def each(records):
            ready(records)
            handed.append(len(records))
            if sum(handed) == 8:  # wait for the captioner to take the first batch
                deadline = time.monotonic() + 30
                while len(server.requests) < 8 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert len(server.requests) >= 8, "captioning waited for the whole partition"

        return stages.normalize_partition(source, raw, state.objects, workers=1, on_ready=each)

    normalized, captions = stages.normalize_and_caption(
        normalize,
        lambda arriving, finished: stages.caption_arriving(
            arriving, finished, len(raw), state.objects, captioner, state.cache
        ),
    )
    assert not isinstance(captions, Exception)
    assert [r.key for r in captions] == [r.key for r in normalized] == sorted(files)
    assert captions.summary["computed"] == 20 and len(server.requests) == 20
    assert normalized.summary["seconds_normalize_and_caption"] > 0


def test_a_captioning_failure_leaves_the_decoded_partition_whole(remote: Settings) -> None:
    write_library(remote.layout.library, variants(6))
    source, state = components.open_source(remote), components.open_state(remote)
    raw = stages.list_raw_images(source, "album/")

    def caption(arriving, finished):
        next(iter(arriving))
        raise RuntimeError("the captioner fell over")

    normalized, captions = stages.normalize_and_caption(
        lambda ready: stages.normalize_partition(source, raw, state.objects, on_ready=ready),
        caption,
    )
    assert isinstance(captions, RuntimeError)
    assert len(normalized) == 6 and normalized.summary["processed"] == 6


def test_overlapped_ingest_accounts_for_every_object_and_reruns_for_free(
    remote: Settings, server, instance
) -> None:
    files = {**variants(10), "album/broken.jpg": b"\xff\xd8\xff\xe0 not a jpeg at all"}
    files["album/copy.jpg"] = files["album/000.jpg"]  # the same bytes: captioned once
    write_library(remote.layout.library, files)
    first = ingest(remote, instance)["album"]
    assert first["normalized_images"]["seconds_normalize_and_caption"] > 0  # overlapped
    assert first["captions"]["computed"] == 10 and len(server.requests) == 10
    assert first["vector_index"]["indexed"] == 11
    assert first["vector_index"]["quarantined"] == 1
    assert "broken.jpg" in first["captions"]["quarantine"]

    again = ingest(remote, instance)["album"]
    assert again["normalized_images"]["computed"] == 0
    assert again["captions"]["computed"] == 0 and len(server.requests) == 10
    assert again["vector_index"]["indexed"] == 11


def test_either_asset_materializes_alone(settings: Settings, instance) -> None:
    write_library(settings.layout.library, variants(3))
    ingest(settings, instance)
    defs = build_definitions(settings)
    (key,) = register_prefixes(instance, components.open_source(settings))[1]
    job = defs.resolve_implicit_global_asset_job_def()
    for alone in ("captions", "normalized_images"):
        result = job.execute_in_process(
            asset_selection=[dg.AssetKey(alone)], partition_key=key, instance=instance
        )
        assert result.success
        (only,) = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert only == alone
        (materialized,) = materializations(result, alone)
        assert materialized.metadata["reused"].value == 3


def test_captions_alone_before_any_decoding_says_what_to_do(settings: Settings, instance) -> None:
    write_library(settings.layout.library, variants(2))
    (key,) = register_prefixes(instance, components.open_source(settings))[1]
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    listed = job.execute_in_process(
        asset_selection=[dg.AssetKey("raw_images")], partition_key=key, instance=instance
    )
    assert listed.success
    result = job.execute_in_process(
        asset_selection=[dg.AssetKey("captions")],
        partition_key=key,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    described = failure.step_failure_data.user_failure_data.description
    assert "has no normalized_images yet: materialize it first" in described
