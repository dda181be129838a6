"""The run launcher for one machine: runs start warm, and dead run workers are noticed.

Warm starts. Dagster's DefaultRunLauncher has the code server spawn a new interpreter per
run, which imports Dagster and the project again (2.5–3 s before the first step, more on a
busy machine). This launcher forks each run from a warm parent that holds those imports
(``defs/run_workers.py``), started on first use and again whenever the code location is
reloaded, so a run pays for its work. ``warm_run_workers: false`` in dagster.yaml (or a
platform without ``fork``) goes back to Dagster's way.

Dead workers. Dagster cannot tell run monitoring whether a local run worker is still alive,
so a run whose worker was killed (OOM, SIGKILL, a reboot) stays STARTED forever and, with a
run limit, blocks the queue. This launcher answers the health check from the worker's
process id, which Dagster records with the run's RUN_START event; ``dam init-home`` turns on
``run_monitoring``, and the daemon then marks such runs failed and the queue moves on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg
import psutil
from dagster._core.errors import DagsterLaunchFailedError
from dagster._core.launcher import (
    CheckRunHealthResult,
    DefaultRunLauncher,
    LaunchRunContext,
    WorkerStatus,
)
from dagster._serdes import serialize_value

import dam_pipeline

WORKER_TAG = "dam/run_worker"
"""Set on runs started by a warm parent."""
START_SECONDS = 300


class WarmRunWorkers:
    """The launcher's side of one warm parent: started on first use, asked for one worker
    per run. Thread-safe: the daemon launches queued runs from several threads."""

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="dam-run-workers-"))
        self._socket = self._folder / "socket"
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def start(self, run: dg.DagsterRun, instance: dg.DagsterInstance) -> None:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._spawn()
        request = {
            "run_id": run.run_id,
            "instance_ref": serialize_value(instance.get_ref()),
            "job_origin": serialize_value(run.job_code_origin),
        }
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(START_SECONDS)
            connection.connect(str(self._socket))
            connection.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(connection.makefile("r").readline() or "{}")
        if "pid" not in reply:
            raise DagsterLaunchFailedError(
                f"The warm run-worker parent could not start run {run.run_id}: "
                f"{reply.get('error', 'no reply')}"
            )

    def _spawn(self) -> None:
        for stale in (self._socket, self._socket.with_suffix(".binding")):
            stale.unlink(missing_ok=True)  # left by a parent that died
        package_root = str(Path(dam_pipeline.__file__).resolve().parent.parent)
        start = (  # importable as the launcher found it, whatever the working directory
            f"import sys; sys.path.insert(0, {package_root!r}); "
            "from dam_pipeline.defs.run_workers import main; main()"
        )
        self._process = subprocess.Popen(
            [sys.executable, "-c", start, str(self._socket)],
            stdin=subprocess.PIPE,  # its lifeline: closed when this process ends
        )
        deadline = time.monotonic() + START_SECONDS
        while not self._socket.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise DagsterLaunchFailedError(
                    "The warm run-worker parent did not start "
                    f"(exit code {self._process.returncode}); see the daemon's log. Set "
                    "warm_run_workers: false under run_launcher in dagster.yaml to bypass it."
                )
            time.sleep(0.02)

    def close(self) -> None:
        if self._process is not None and self._process.stdin:
            self._process.stdin.close()  # the parent exits; running workers carry on
        shutil.rmtree(self._folder, ignore_errors=True)


class LocalRunLauncher(DefaultRunLauncher):
    def __init__(self, inst_data=None, warm_run_workers: bool = True) -> None:
        super().__init__(inst_data=inst_data)
        self._warm = warm_run_workers and hasattr(os, "fork")
        self._workers: WarmRunWorkers | None = None
        self._generation = ""
        """The code location's name and server id the warm parent imported."""
        self._workers_lock = threading.Lock()

    @classmethod
    def config_type(cls) -> dict:
        return {"warm_run_workers": dg.Field(bool, is_required=False, default_value=True)}

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> LocalRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origins = (run.job_code_origin, run.remote_job_origin, context.workspace)
        if not self._warm or None in origins:
            return super().launch_run(context)
        location_name = run.remote_job_origin.repository_origin.code_location_origin.location_name
        location = context.workspace.get_code_location(location_name)
        # a reload of the code location gives it a new server id: a new warm parent
        generation = f"{location_name}:{getattr(location, 'server_id', '')}"
        # tagged before the fork: the worker may already be writing the run's status
        self._instance.add_run_tags(run.run_id, {WORKER_TAG: "forked from a warm parent"})
        self._workers_for(generation).start(run, self._instance)
        self._run_ids.add(run.run_id)

    def _workers_for(self, generation: str) -> WarmRunWorkers:
        with self._workers_lock:
            if self._workers is None or generation != self._generation:
                if self._workers is not None:
                    self._workers.close()  # its code is stale: the next run gets a new one
                self._workers, self._generation = WarmRunWorkers(), generation
            return self._workers

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or WORKER_TAG not in run.tags:
            return super().terminate(run_id)
        if run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        deadline = time.monotonic() + 30  # a run just launched records its pid at once
        while (pid := self._worker_pid(run_id)) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGINT)  # as the code server does: the run stops at a step
        except ProcessLookupError:
            return False
        return True

    def _worker_pid(self, run_id: str) -> int | None:
        """The run worker's process id, recorded with the run's RUN_START event."""
        records = self._instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
        ).records
        return records[0].event_log_entry.dagster_event.pid if records else None

    def dispose(self) -> None:
        with self._workers_lock:
            if self._workers is not None:
                self._workers.close()
            self._workers = None

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        pid = self._worker_pid(run.run_id)
        if pid is None:  # not started yet: start_timeout_seconds covers that
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker not started yet")
        try:
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {pid} is alive")
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker pid {pid} is gone (killed or crashed)"
        )
