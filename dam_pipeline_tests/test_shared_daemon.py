"""A backfill through a real `dagster-daemon` whose instance is in Postgres (the shared
profile): runs of several partitions side by side, state only in Postgres and S3."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import dagster as dg
import pytest

import dam_pipeline
from dam_pipeline_tests.deployment import Deployment, deployment, finished, state_left_on_disk
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion
from dam_pipeline_tests.test_daemon import dagster_cli
from dam_pipeline_tests.test_embedders import titan_handler
from dam_pipeline_tests.test_shared_profile import CAPTION, remote_captioner

PROJECT = Path(dam_pipeline.__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BACKFILL = {f"batch {i}/photo.jpg": "astronaut" for i in range(4)}


@pytest.fixture
def llm() -> Iterator[ScriptedHTTPServer]:
    """A vision model that answers at once."""
    with ScriptedHTTPServer(
        lambda method, path, body: (200, chat_completion(CAPTION), {})
    ) as server:
        yield server


@pytest.fixture
def bedrock() -> Iterator[ScriptedHTTPServer]:
    """Titan multimodal embeddings over Bedrock's protocol: with the remote captioner, the
    run workers never import torch (each run is a fresh process)."""
    with ScriptedHTTPServer(titan_handler) as server:
        yield server


@pytest.fixture(scope="module")
def shared(tmp_path_factory, s3_endpoint: str, postgres_url: str) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deployment")
    with deployment(root, postgres_url, s3_endpoint, "backfill-photos", BACKFILL) as d:
        yield d


@pytest.mark.slow
def test_a_backfill_through_the_daemon_on_the_postgres_instance(
    shared: Deployment, llm: ScriptedHTTPServer, bedrock: ScriptedHTTPServer
) -> None:
    env = shared.env(
        DAM_SENSOR_INTERVAL_SECONDS="3600",
        DAM_EMBEDDER="bedrock-titan",
        DAM_EMBEDDING_DIMENSION="256",
        DAM_BEDROCK_ENDPOINT_URL=bedrock.url,
        **remote_captioner(llm.url),
    )
    finished(shared.dam(env, "prefixes"))  # registers the partitions in Postgres
    partitions = sorted({key.split("/")[0] for key in BACKFILL})
    log_path = Path(env["DAM_DATA_DIR"]).parent / "daemon.log"
    workspace = ["-w", str(PROJECT / "workspace.yaml")]
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [BIN / "dagster-daemon", "run", *workspace],
            env=env,
            cwd=PROJECT,
            stdout=log,
            stderr=log,
        )
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        try:
            dagster_cli(
                env, "job", "backfill", *workspace, "-j", "ingest_job",
                "--partitions", ",".join(partitions), "--noprompt",
            )  # fmt: skip

            def done() -> list[dg.RunRecord]:
                records = instance.get_run_records(dg.RunsFilter(job_name="ingest_job"))
                mine = [r for r in records if r.dagster_run.tags.get("dagster/backfill")]
                finished_runs = [r for r in mine if r.dagster_run.status in DONE]
                return finished_runs if len(finished_runs) == len(partitions) else []

            deadline = time.monotonic() + 300
            while not (runs := done()) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert runs, log_path.read_text()[-3000:]
            failures = {  # what a failed run said, for the assertion below
                r.dagster_run.run_id: [
                    f"{e.dagster_event_type}: {e.message}"[:600]
                    for e in instance.all_logs(r.dagster_run.run_id)
                    if e.dagster_event_type is not None and "FAILURE" in e.dagster_event_type.value
                ]
                for r in runs
                if r.dagster_run.status != dg.DagsterRunStatus.SUCCESS
            }
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
            instance.dispose()
    assert not failures, failures
    assert sorted(r.dagster_run.tags["dagster/partition"] for r in runs) == partitions
    spans = sorted((r.start_time, r.end_time) for r in runs)
    assert any(later[0] < earlier[1] for earlier, later in pairwise(spans)), spans
    keys = shared.sql(
        "SELECT metadata->>'key' FROM dam_vectors_dam_images WHERE partition LIKE 'batch%%'"
    )
    assert sorted(key for (key,) in keys) == sorted(BACKFILL)
    assert state_left_on_disk(env) == ["daemon.log"]


DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
