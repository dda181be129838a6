"""The product as a user runs it: the Dagster daemon follows a bucket on its own.

A real `dagster-daemon` process with a temporary DAGSTER_HOME, the upload sensor switched
on with the `dagster` CLI, a photo uploaded to the moto S3 server, and the run it triggers
watched until the photo is searchable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

import dam_pipeline
from dam_pipeline import api
from dam_pipeline.cli import ensure_dagster_home
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import upload

PROJECT = Path(dam_pipeline.__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WAIT_SECONDS = 420


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(settings.layout.dagster_home),
        "DAM_DATA_DIR": str(settings.data_dir),
        "DAM_SOURCE": settings.source,
        "DAM_SENSOR_INTERVAL_SECONDS": "3",
    }


@pytest.mark.slow
def test_daemon_picks_up_an_upload_and_makes_it_searchable(
    s3_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(s3_settings)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    ensure_dagster_home(s3_settings)
    workspace = ["-w", str(PROJECT / "workspace.yaml")]
    started = subprocess.run(
        [BIN / "dagster", "sensor", "start", "upload_sensor", *workspace],
        env=env,
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    log = (s3_settings.data_dir / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", *workspace], env=env, cwd=PROJECT, stdout=log, stderr=log
    )
    try:
        upload(s3_settings, {"holiday/cat on the sofa.jpg": "chelsea"})
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        deadline = time.monotonic() + WAIT_SECONDS
        runs = []
        while time.monotonic() < deadline:
            runs = instance.get_runs(dg.RunsFilter(job_name="ingest_job"))
            if runs and runs[0].status in (
                dg.DagsterRunStatus.SUCCESS,
                dg.DagsterRunStatus.FAILURE,
            ):
                break
            time.sleep(2)
        assert runs, f"no run was launched in {WAIT_SECONDS}s; daemon log: {_tail(log.name)}"
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS, _tail(log.name)
        assert runs[0].tags.get("dagster/partition") == "holiday"
        assert runs[0].tags.get("dagster/sensor_name") == "upload_sensor"
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()

    assert api.search("a cat", settings=s3_settings)[0].key == "holiday/cat on the sofa.jpg"


def _tail(path: str, lines: int = 40) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
