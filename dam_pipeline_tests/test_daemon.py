"""The product as a user runs it: the Dagster daemon follows a bucket on its own, a run
whose worker dies does not block the queue or the pool, index writers take turns through
the pool, and ingestion never holds a query up.

A real `dagster-daemon` process with the DAGSTER_HOME that `dam init-home` writes, the
upload sensor switched on with the `dagster` CLI, photos uploaded to the moto S3 server,
and the runs they trigger watched until the photos are searchable.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

import dam_pipeline
from dam_pipeline import components
from dam_pipeline.defs.instance import open_instance
from dam_pipeline.defs.run_monitoring import worker_pid
from dam_pipeline.locks import exclusive
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import upload
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion, start_dam_serve
from dam_pipeline_tests.test_embedders import titan_handler
from dam_pipeline_tests.test_live_library import get
from dam_pipeline_tests.test_shared_profile import CAPTION, remote_captioner

PROJECT = Path(dam_pipeline.__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WAIT_SECONDS = 300
CANCELED = dg.DagsterRunStatus.CANCELED
DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, CANCELED)


def _env(settings: Settings, llm_url: str, bedrock_url: str) -> dict[str, str]:
    """Captions and vectors over the OpenAI and Bedrock protocols from local servers: every
    run is a fresh interpreter, and none has to load the local models (seconds each)."""
    return {
        **os.environ,
        "DAGSTER_HOME": str(settings.dagster_home),
        "DAM_DATA_DIR": str(settings.data_dir),
        "DAM_SOURCE": settings.source,
        "DAM_SENSOR_INTERVAL_SECONDS": "2",
        "DAM_EMBEDDER": "bedrock-titan",
        "DAM_EMBEDDING_DIMENSION": "256",
        "DAM_BEDROCK_ENDPOINT_URL": bedrock_url,
        **remote_captioner(llm_url),
    }


def dagster_cli(env: dict[str, str], *args: str) -> None:
    """The `dagster` command as a user types it, against this instance."""
    done = subprocess.run(
        [BIN / "dagster", *args],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def wait_for(what: str, check, log: Path, seconds: float = WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {seconds:.0f}s; daemon log:\n{_tail(log)}")


@pytest.mark.slow
def test_the_daemon_follows_uploads_and_survives_a_killed_run_worker(
    s3_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = contextlib.ExitStack()
    llm = servers.enter_context(
        ScriptedHTTPServer(lambda method, path, body: (200, chat_completion(CAPTION), {}))
    )
    bedrock = servers.enter_context(ScriptedHTTPServer(titan_handler))
    env = _env(s3_settings, llm.url, bedrock.url)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    open_instance(s3_settings)
    workspace = ["-w", str(PROJECT / "workspace.yaml")]
    dagster_cli(env, "sensor", "start", "upload_sensor", *workspace)
    log_path = s3_settings.data_dir / "daemon.log"
    log = log_path.open("w")
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", *workspace], env=env, cwd=PROJECT, stdout=log, stderr=log
    )
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])

    def ingest_runs() -> list[dg.DagsterRun]:
        return list(reversed(instance.get_runs(dg.RunsFilter(job_name="ingest_job"))))

    serve = None
    try:
        # 1. An upload starts a run; its worker is killed as soon as it runs.
        upload(s3_settings, {"holiday/cat on the sofa.jpg": "chelsea"})
        first = wait_for("a run for the upload", lambda: ingest_runs()[:1], log_path)[0]
        pid = wait_for("the run worker", lambda: worker_pid(instance, first.run_id), log_path)
        wait_for(  # the start event is stored a moment before the run's status changes
            "the run started",
            lambda: instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.STARTED,
            log_path,
        )
        # every step runs in the run's own process: nothing but the worker to kill
        worker = psutil.Process(pid)
        children = [
            p
            for p in worker.children(recursive=True)
            if "local_chroma" not in " ".join(p.cmdline())
        ]
        worker.kill()
        # 2. The dead-run sensor notices the dead worker and fails the run: the queue and
        # the pool move on, and nothing writes into the failed run afterwards.
        failed = wait_for(
            "the killed run marked failed",
            lambda: instance.get_run_by_id(first.run_id).status in DONE,
            log_path,
        )
        assert failed and instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.FAILURE
        events = len(instance.all_logs(first.run_id))
        time.sleep(3)
        assert len(instance.all_logs(first.run_id)) == events
        assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        # 3. The next upload's run starts and processes everything still pending.
        upload(s3_settings, {"holiday/coffee.jpg": "coffee"})
        second = wait_for(
            "the next run finished",
            lambda: [r for r in ingest_runs()[1:] if r.status in DONE],
            log_path,
        )[0]
        assert second.status == dg.DagsterRunStatus.SUCCESS, _tail(log_path)
        assert second.tags.get("dagster/partition") == "holiday"
        assert second.tags.get("dagster/sensor_name") == "upload_sensor"

        # The search page, as a user keeps it open while the sensor's runs write the index.
        serve, page = start_dam_serve(env, cwd=s3_settings.data_dir)
        # 4. Ingestion never holds queries up, and index writers take turns through the
        # pool. Three prefixes arrive at once while the test holds the index's writer lock:
        # two ingest runs start (the run tag limit), one holds the pool's slot at
        # vector_index, the other waits for it; a query launched now still runs.
        with exclusive(s3_settings.layout.index_writer_lock, "the test, as another writer"):
            upload(s3_settings, {f"{p}/coffee.jpg": "coffee" for p in ("a", "b", "c")})
            new = lambda: ingest_runs()[2:]  # noqa: E731
            wait_for("three ingest runs", lambda: len(new()) == 3, log_path)
            wait_for(
                "one ingest run writing the index",
                lambda: sum(_reached(instance, r.run_id, "vector_index") for r in new()) == 1,
                log_path,
            )
            wait_for(
                "another waiting for the pool",
                lambda: (
                    sum(_reached(instance, r.run_id, "embeddings", "STEP_SUCCESS") for r in new())
                    == 2
                ),
                log_path,
            )
            config = '{"mode": "search"}'
            dagster_cli(
                env, "job", "launch", *workspace, "-j", "query_job", "--config-json", config
            )
            query = wait_for(
                "the query run finished",
                lambda: [
                    r
                    for r in instance.get_runs(dg.RunsFilter(job_name="query_job"))
                    if r.status in DONE
                ],
                log_path,
            )[0]
            assert query.status == dg.DagsterRunStatus.SUCCESS, _tail(log_path)
            statuses = sorted(instance.get_run_by_id(r.run_id).status.value for r in new())
            assert statuses == ["QUEUED", "STARTED", "STARTED"]
            assert sum(_reached(instance, r.run_id, "vector_index") for r in new()) == 1
        # while the runs write, every search the page answers is a 200 (or a readable 503)
        answered = []

        def written_while_searching() -> bool:
            for mode in ("dense", "keyword", "hybrid"):
                status, _ = get(page, "/api/search", q="a photograph", prefix="holiday", mode=mode)
                answered.append(status)
                assert status in (200, 503), status
            return all(r.status in DONE for r in new())

        wait_for("the other ingest runs", written_while_searching, log_path)
        assert answered.count(200) >= 3, answered
        # and it finds what they wrote, under the new prefixes, without a restart
        for prefix in ("a", "b", "c"):
            status, found = get(page, "/api/search", q="photograph", prefix=prefix, mode="keyword")
            assert status == 200, found  # a 503 says its cause in one line
            assert [h["key"] for h in found["hits"]] == [f"{prefix}/coffee.jpg"]
        assert sorted(r.status.value for r in new()) == ["SUCCESS", "SUCCESS", "SUCCESS"]
        windows = sorted(_window(instance, r.run_id, "vector_index") for r in new())
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(windows)), windows
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=30)
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()
        servers.close()

    store = components.open_vector_store(s3_settings)
    indexed = {
        p: sorted(m["key"] for m in store.list_partition(p).values())
        for p in ("holiday", "a", "b", "c")
    }
    assert indexed == {
        "holiday": ["holiday/cat on the sofa.jpg", "holiday/coffee.jpg"],
        "a": ["a/coffee.jpg"],
        "b": ["b/coffee.jpg"],
        "c": ["c/coffee.jpg"],
    }


def _reached(
    instance: dg.DagsterInstance, run_id: str, step: str, event: str = "STEP_START"
) -> bool:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType(event)).records
    return any(record.event_log_entry.step_key == step for record in records)


def _window(instance: dg.DagsterInstance, run_id: str, step: str) -> tuple[float, float]:
    """When the step started and ended, from the run's events."""
    times = {}
    for kind in ("STEP_START", "STEP_SUCCESS"):
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType(kind)).records
        (times[kind],) = [r.timestamp for r in records if r.event_log_entry.step_key == step]
    return times["STEP_START"], times["STEP_SUCCESS"]


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
