"""A live library: `dam serve` keeps answering, and sees new photos, while another process
ingests into the same embedded index (the default profile, nothing set up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, write_library
from dam_pipeline_tests.servers import start_dam_serve

BIN = Path(sys.executable).parent
VISIBLE_WITHIN_SECONDS = 5.0
"""The bound the README states: a committed partition is searchable this soon."""


def get(base: str, path: str, **params) -> tuple[int, dict | str]:
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=60) as reply:
            body = reply.read().decode()
            status = reply.status
    except urllib.error.HTTPError as error:
        body, status = error.read().decode(), error.code
    if body.startswith("{"):
        return status, json.loads(body)
    return status, body


REQUESTS = [
    ("/api/search", {"q": "a rocket", "mode": "dense"}),
    ("/api/search", {"q": "a rocket", "mode": "keyword"}),
    ("/api/search", {"q": "a rocket", "mode": "hybrid"}),
    ("/api/search", {"q": "a cat", "prefix": "pets"}),
    ("/api/search", {"q": "a cat", "prefix": "pets", "mode": "hybrid"}),
    ("/api/ask", {"q": "is there a cat?"}),
    ("/api/similar", {"key": "pets/chelsea.jpg"}),
    ("/api/image", {"key": "pets/chelsea.jpg"}),
    ("/api/duplicates", {}),
    ("/api/prefixes", {}),
    ("/", {"q": "a cat", "action": "search", "prefix": "pets"}),
    ("/duplicates", {}),
]


@pytest.mark.slow
def test_the_page_answers_during_an_ingest_and_then_finds_the_new_photos(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    data = settings.data_dir
    env = {**os.environ, "DAM_DATA_DIR": str(data), "DAM_WORKERS": "2"}
    write_library(data / "library", {"pets/chelsea.jpg": "chelsea", "kitchen/coffee.jpg": "coffee"})
    ingest(settings, instance)  # here; the writer during the test is another process
    serve, base = start_dam_serve(env)
    try:
        status, found = get(base, "/api/search", q="a rocket", prefix="space")
        assert status == 400 and "Unknown prefix 'space'" in found["error"]
        # a new prefix, and a new photo in a prefix the server already knows
        write_library(
            data / "library", {"space/rocket.jpg": "rocket", "pets/astronaut.jpg": "astronaut"}
        )
        writer = subprocess.Popen(
            [BIN / "dam", "ingest", "-q"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        statuses: dict[int, int] = {}
        while writer.poll() is None:
            for path, params in REQUESTS:
                status, body = get(base, path, **params)
                statuses[status] = statuses.get(status, 0) + 1
                assert status in (200, 503), (path, params, status, body)
            time.sleep(0.2)  # a person's pace, not a load test: the writer shares 2 cores
        out, err = writer.communicate()
        assert writer.returncode == 0, out + err
        ingest_ended = time.monotonic()
        assert statuses.get(200, 0) >= len(REQUESTS), statuses

        last: list = []

        def new_photos_found() -> bool:
            status, space = get(base, "/api/search", q="a rocket", prefix="space")
            last[:] = [status, space]  # a 503 says its cause in one line
            _, pets = get(base, "/api/search", q="an astronaut", prefix="pets", mode="hybrid")
            return (
                isinstance(space, dict)
                and [h["key"] for h in space.get("hits", [])][:1] == ["space/rocket.jpg"]
                and "pets/astronaut.jpg" in [h["key"] for h in pets.get("hits", [])]
            )

        while not new_photos_found():
            assert time.monotonic() - ingest_ended < VISIBLE_WITHIN_SECONDS, last
            time.sleep(0.2)
        assert get(base, "/api/prefixes")[1]["prefixes"] == ["kitchen", "pets", "space"]
        for path, params in [
            ("/api/image", {"key": "space/rocket.jpg"}),
            ("/api/similar", {"key": "space/rocket.jpg"}),
            ("/api/search", {"q": "rocket", "mode": "keyword", "prefix": "space"}),
        ]:
            status, body = get(base, path, **params)
            assert status == 200, (path, body)
        status, hits = get(base, "/api/search", q="rocket", mode="keyword")
        assert hits["hits"][0]["key"] == "space/rocket.jpg"
    finally:
        serve.terminate()
        serve.wait(timeout=30)
