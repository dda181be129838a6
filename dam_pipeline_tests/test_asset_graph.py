"""The asset graph as an experienced Dagster user drives it: a real `dagster-webserver` and
`dagster-daemon`, work launched through the webserver's GraphQL API exactly as the UI's
"Materialize" button does (one partition: an ``__ASSET_JOB`` run; several: an asset
backfill). Every step runs in the run's own process, a backfill is one run, and a run
whose worker is killed is failed and leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

import dam_pipeline
from bench.dagster_ui import (
    backfill_partitions,
    materialize_partition,
    start_daemon,
    start_webserver,
)
from dam_pipeline import components
from dam_pipeline.defs.instance import open_instance, register_prefixes
from dam_pipeline.defs.run_monitoring import worker_pid
from dam_pipeline.locks import exclusive
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import write_library
from dam_pipeline_tests.servers import (
    ScriptedHTTPServer,
    chat_completion,
    free_port,
    wait_for_http,
)
from dam_pipeline_tests.test_embedders import titan_handler
from dam_pipeline_tests.test_shared_profile import CAPTION, remote_captioner

PROJECT = Path(dam_pipeline.__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PHOTOS = ("chelsea", "coffee", "rocket", "astronaut", "horse", "camera")
PARTITIONS = [f"p{i}" for i in range(len(PHOTOS))]


def wait_for(what: str, check, log: Path, seconds: float = 300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    raise AssertionError(f"{what} did not happen in {seconds:.0f}s; log:\n{tail}")


def step_pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return {r.event_log_entry.dagster_event.pid for r in records}


def reached(instance: dg.DagsterInstance, run_id: str, step: str) -> bool:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return any(r.event_log_entry.step_key == step for r in records)


@pytest.mark.slow
def test_materialize_and_backfill_from_the_asset_graph(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_library(
        settings.layout.library,
        {f"{p}/photo.jpg": name for p, name in zip(PARTITIONS, PHOTOS, strict=True)},
    )
    # Captions and vectors over the OpenAI and Bedrock protocols from local servers: each
    # run is a fresh interpreter, and none of them has to load the local models.
    servers = contextlib.ExitStack()
    llm = servers.enter_context(
        ScriptedHTTPServer(lambda method, path, body: (200, chat_completion(CAPTION), {}))
    )
    bedrock = servers.enter_context(ScriptedHTTPServer(titan_handler))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(settings.dagster_home),
        "DAM_DATA_DIR": str(settings.data_dir),
        "DAM_WORKERS": "2",
        "DAM_EMBEDDER": "bedrock-titan",
        "DAM_EMBEDDING_DIMENSION": "256",
        "DAM_BEDROCK_ENDPOINT_URL": bedrock.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        **remote_captioner(llm.url),
    }
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    instance = open_instance(settings)
    register_prefixes(instance, components.open_source(settings))
    log_path = settings.data_dir / "dagster.log"
    log = log_path.open("w")
    port = free_port()
    processes = [start_webserver(env, PROJECT, log, port)]
    url = f"http://127.0.0.1:{port}"

    def finished(run_id: str) -> dg.DagsterRun | None:
        run = instance.get_run_by_id(run_id)
        return run if run is not None and run.is_finished else None

    try:
        wait_for_http(f"{url}/server_info", processes[0], timeout=120)
        # 1. "Materialize all" over six partitions: one backfill, executed as one run. The
        # daemon starts after it is requested: its first pass takes it at once, instead of
        # up to 30 s later (the backfill daemon's loop)
        backfill_id = backfill_partitions(url, PARTITIONS)
        processes.append(start_daemon(env, PROJECT, log))
        runs = wait_for(
            "the backfill's run to finish",
            lambda: [
                r
                for r in instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
                if r.is_finished
            ],
            log_path,
        )
        assert len(instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))) == 1
        (run,) = runs
        assert run.status == dg.DagsterRunStatus.SUCCESS
        # every step ran in the run's process (no process per step)
        assert step_pids(instance, run.run_id) == {worker_pid(instance, run.run_id)}
        indexed = instance.get_materialized_partitions(dg.AssetKey("vector_index"))
        assert indexed == set(PARTITIONS)
        checks = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ).records
        verdicts = {
            r.event_log_entry.dagster_event.event_specific_data.check_name: (
                r.event_log_entry.dagster_event.event_specific_data
            )
            for r in checks
        }
        index_check = verdicts["vector_index_matches_manifest"]
        assert index_check.passed
        rows = index_check.metadata["partitions"].value.records
        assert sorted(row.data["partition"] for row in rows) == PARTITIONS

        # 2. A run from the asset graph whose worker is killed while it waits to write the
        # index: failed, nothing written into it afterwards, no process left behind, and
        # its pool slot given back (the next run writes the index).
        write_library(settings.layout.library, {"p1/second.jpg": "coffee"})
        with exclusive(settings.layout.index_writer_lock, "the test, as another writer"):
            killed = materialize_partition(url, "p1")
            wait_for(
                "it waits at vector_index",
                lambda: reached(instance, killed, "vector_index"),
                log_path,
            )
            worker = psutil.Process(worker_pid(instance, killed))
            children = [
                p
                for p in worker.children(recursive=True)
                if "local_chroma" not in " ".join(p.cmdline())
            ]
            worker.kill()
            dead = wait_for("the killed run failed", lambda: finished(killed), log_path, 60)
            assert dead.status == dg.DagsterRunStatus.FAILURE
            events = len(instance.all_logs(killed))
            time.sleep(3)
            assert len(instance.all_logs(killed)) == events
            assert not [
                p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            ]
        # 3. "Materialize" one partition: an __ASSET_JOB run in one process, which writes
        # the index (the killed run's pool slot was given back)
        again = materialize_partition(url, "p1")
        after = wait_for("the next run", lambda: finished(again), log_path)
        assert after.status == dg.DagsterRunStatus.SUCCESS
        assert after.job_name == "__ASSET_JOB"
        assert reached(instance, again, "vector_index")
        assert step_pids(instance, again) == {worker_pid(instance, again)}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        log.close()
        servers.close()
