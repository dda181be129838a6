"""A run launcher for one machine that notices dead run workers.

Dagster's DefaultRunLauncher starts each run worker as a local process but cannot tell run
monitoring whether that process is still alive, so a run whose worker was killed (OOM,
SIGKILL, a reboot) stays STARTED forever and, with a run limit, blocks the queue. This
launcher answers the health check from the worker's process id, which Dagster records
with the run's RUN_START event. ``dam init-home`` writes it into dagster.yaml together
with ``run_monitoring``; the daemon then marks such runs failed and the queue moves on.
"""

import dagster as dg
import psutil
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        records = self._instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
        ).records
        pid = records[0].event_log_entry.dagster_event.pid if records else None
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
