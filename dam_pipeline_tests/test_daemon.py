"""The product as a user runs it: the Dagster daemon follows a bucket on its own, a run
whose worker dies does not block the queue, and ingestion never holds a query up.

A real `dagster-daemon` process with the DAGSTER_HOME that `dam init-home` writes, the
upload sensor switched on with the `dagster` CLI, photos uploaded to the moto S3 server,
and the runs they trigger watched until the photos are searchable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

import dam_pipeline
from dam_pipeline import api
from dam_pipeline.cli import ensure_dagster_home
from dam_pipeline.defs.run_launcher import WORKER_TAG
from dam_pipeline.locks import exclusive
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import upload

PROJECT = Path(dam_pipeline.__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WAIT_SECONDS = 300
CANCELED = dg.DagsterRunStatus.CANCELED
DONE = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, CANCELED)


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(settings.dagster_home),
        "DAM_DATA_DIR": str(settings.data_dir),
        "DAM_SOURCE": settings.source,
        "DAM_SENSOR_INTERVAL_SECONDS": "2",
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


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
    ).records
    return records[0].event_log_entry.dagster_event.pid if records else None


@pytest.mark.slow
def test_the_daemon_follows_uploads_and_survives_a_killed_run_worker(
    s3_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(s3_settings)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    ensure_dagster_home(s3_settings)
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
        # it was forked from the launcher's warm parent, not spawned by the code server
        assert WORKER_TAG in instance.get_run_by_id(first.run_id).tags, _tail(log_path)
        assert "dam_pipeline.defs.run_workers" in " ".join(psutil.Process(pid).cmdline())
        os.kill(pid, signal.SIGKILL)
        # 2. Run monitoring notices the dead worker and fails the run: the queue moves on.
        failed = wait_for(
            "the killed run marked failed",
            lambda: instance.get_run_by_id(first.run_id).status in DONE,
            log_path,
        )
        assert failed and instance.get_run_by_id(first.run_id).status == dg.DagsterRunStatus.FAILURE
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

        # 4. Ingestion never holds queries up. Three prefixes arrive at once while the test
        # holds the embedded index's writer lock: two ingest runs start (the tag limit) and
        # wait at vector_index, the third stays queued, and a query launched now still runs.
        with exclusive(s3_settings.layout.index_writer_lock, "the test, as another writer"):
            upload(s3_settings, {f"{p}/coffee.jpg": "coffee" for p in ("a", "b", "c")})
            new = lambda: ingest_runs()[2:]  # noqa: E731
            wait_for("three ingest runs", lambda: len(new()) == 3, log_path)
            wait_for(
                "two ingest runs waiting for the index",
                lambda: sum(_reached(instance, r.run_id, "vector_index") for r in new()) == 2,
                log_path,
            )
            config = '{"ops": {"answer_question": {"config": {"mode": "search"}}}}'
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
            # 5. Terminating a waiting run, as the UI's button does from another process,
            # interrupts its forked worker: the run ends canceled and frees its slot.
            waiting = next(r for r in new() if r.status == dg.DagsterRunStatus.STARTED)
            assert instance.run_coordinator.cancel_run(waiting.run_id)
            wait_for(
                "the terminated run canceled",
                lambda: instance.get_run_by_id(waiting.run_id).status == CANCELED,
                log_path,
            )
        wait_for("the other ingest runs", lambda: all(r.status in DONE for r in new()), log_path)
        assert sorted(r.status.value for r in new()) == ["CANCELED", "SUCCESS", "SUCCESS"]
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()

    assert api.search("a cat", settings=s3_settings)[0].key == "holiday/cat on the sofa.jpg"
    coffee = {hit.key for hit in api.search("a cup of coffee", settings=s3_settings, top_k=3)}
    canceled = f"{waiting.tags['dagster/partition']}/coffee.jpg"
    assert coffee == {"holiday/coffee.jpg", "a/coffee.jpg", "b/coffee.jpg", "c/coffee.jpg"} - {
        canceled
    }


def _reached(instance: dg.DagsterInstance, run_id: str, step: str) -> bool:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records
    return any(record.event_log_entry.step_key == step for record in records)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
