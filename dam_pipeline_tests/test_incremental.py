"""Embed once, reuse forever; the index always equals what the source holds, with a served
index and across a run killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import dagster as dg
from PIL import Image

from dam_pipeline import components
from dam_pipeline.api import search
from dam_pipeline.keys import vector_id
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, jpeg_bytes, photo, upload, write_library
from dam_pipeline_tests.servers import chroma_server


def variants(count: int) -> dict[str, bytes]:
    """``count`` distinct real photos: crops and mirror images of the scikit-image set."""
    names = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle_left"]
    files = {}
    for i in range(count):
        image = photo(names[i % len(names)])
        w, h = image.size
        image = image.crop((i % 7, i % 5, w - (i % 11), h - (i % 3)))
        if i % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        files[f"album/{i:03d}.jpg"] = jpeg_bytes(image)
    return files


def test_identical_bytes_are_computed_once_and_indexed_under_every_key(
    settings: Settings, instance
) -> None:
    same = jpeg_bytes(photo("coffee"))
    write_library(
        settings.layout.library, {"a/one.jpg": same, "a/two.jpg": same, "a/cat.jpg": "chelsea"}
    )
    result = ingest(settings, instance)["a"]
    assert result["captions"]["computed"] == 2 and result["embeddings"]["computed"] == 2
    assert result["vector_index"]["indexed"] == 3
    keys = {hit.key for hit in search("coffee", top_k=5, settings=settings)}
    assert {"a/one.jpg", "a/two.jpg"} <= keys


def test_changing_one_object_recomputes_only_that_object(settings: Settings, instance) -> None:
    write_library(settings.layout.library, variants(6))
    ingest(settings, instance)
    write_library(settings.layout.library, {"album/003.jpg": "astronaut"})
    result = ingest(settings, instance)["album"]
    assert (
        result["normalized_images"]["computed"] == 1 and result["normalized_images"]["reused"] == 5
    )
    assert result["captions"]["computed"] == 1 and result["embeddings"]["computed"] == 1
    assert result["vector_index"]["upserted"] == 1 and result["vector_index"]["unchanged"] == 5


def test_ingest_into_a_chroma_server_from_s3(s3_settings: Settings, tmp_path) -> None:
    """The pipeline with a served index: the vectors live in the `chroma run` server, not in
    the data directory. (Runs whose steps share no disk at all are the shared profile's
    proof, test_shared_profile.)"""
    upload(
        s3_settings,
        {"trip/cat.jpg": "chelsea", "trip/coffee.jpg": "coffee", "trip/rocket.jpg": "rocket"},
    )
    with (
        chroma_server(tmp_path / "chroma-server") as chroma_url,
        dg.instance_for_test() as instance,
    ):
        served = s3_settings.replace(chroma_url=chroma_url)
        result = ingest(served, instance)
        assert result["trip"]["vector_index"]["upserted"] == 3
        assert components.open_vector_store(served).count() == 3
        assert not served.layout.chroma.exists()
        assert search("a cup of coffee", settings=served)[0].key == "trip/coffee.jpg"


def test_a_run_killed_half_way_ends_with_one_vector_per_object_when_run_again(
    settings: Settings, dam
) -> None:
    # caption batches of 16, 16 and 8: the first is written (while the models take the
    # next ones), then the kill
    files = variants(40)
    write_library(settings.layout.library, files)
    env = {
        **os.environ,
        "DAM_DATA_DIR": str(settings.data_dir),
        "DAGSTER_HOME": str(settings.layout.dagster_home),
        "DAM_OCR": "off",
    }
    command = [sys.executable, "-m", "dam_pipeline.cli", "ingest"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = settings.layout.cache
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if cache.exists() and _count(cache, "captions") >= 8:
            break
        time.sleep(0.05)
    assert first.poll() is None, "the run finished before it could be killed"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert _count(cache, "captions") < len(files)  # really half-way

    second = dam(settings, "ingest", DAM_OCR="off")  # the same command, run again
    assert second.code == 0, second.err
    stored = components.open_vector_store(settings).list_partition("album")
    source_id = components.open_source(settings).source_id
    assert sorted(stored) == sorted(vector_id(source_id, key) for key in files)
    assert sorted(meta["key"] for meta in stored.values()) == sorted(files)


def _count(cache, table: str) -> int:
    with sqlite3.connect(cache, timeout=5) as db:
        try:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
