"""Upkeep of the instance from the code location: runs whose worker process died are
failed, so they free the queue and their pool slots; the index writers' pool has its limit.

Dagster cannot tell, with its default launcher, whether a local run worker is still alive:
a run whose process was killed (OOM, SIGKILL, a reboot) stays STARTED, and holds its slot
of the index writers' pool. Every run worker records its process id with the run's
RUN_START event; this sensor, on by default, fails the started runs whose process is gone.
It only looks at runs of this machine's launcher (Dagster's default one): with a Docker or
Kubernetes launcher, Dagster's own run monitoring asks the launcher instead.
"""

from __future__ import annotations

import socket

import dagster as dg
import psutil

from dam_pipeline.defs.ingest import HOST_TAG
from dam_pipeline.defs.instance import ensure_pool_limit, index_writers
from dam_pipeline.settings import Settings

CHECK_SECONDS = 5


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The run worker's process id, recorded with the run's RUN_START event."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
    ).records
    event = records[0].event_log_entry.dagster_event if records else None
    return event.pid if event is not None else None


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def fail_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Fail every started run of this machine whose worker process is gone; their ids."""
    failed = []
    here = socket.gethostname()
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        if run.tags.get(HOST_TAG, here) != here:
            continue  # `dam ingest` on another machine of a shared instance
        pid = worker_pid(instance, run.run_id)
        if pid is None or not _gone(pid):
            continue
        current = instance.get_run_by_id(run.run_id)
        if current is None or current.status != dg.DagsterRunStatus.STARTED:
            continue  # it finished meanwhile
        instance.report_run_failed(
            current, f"The run's worker process (pid {pid}) is gone: killed or crashed."
        )
        failed.append(run.run_id)
    return failed


@dg.sensor(
    minimum_interval_seconds=CHECK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails started runs whose worker process died (killed, out of memory), so "
    "they free the queue and the index writers' pool.",
)
def dead_run_worker_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    if not isinstance(context.instance.run_launcher, dg.DefaultRunLauncher):
        return dg.SkipReason("runs are launched elsewhere: Dagster's run monitoring applies")
    failed = fail_dead_runs(context.instance)
    for run_id in failed:
        context.log.warning("run %s failed: its worker process is gone", run_id)
    return dg.SkipReason(f"failed {len(failed)} dead runs" if failed else "no dead run")


def build_pool_sensor(settings: Settings) -> dg.SensorDefinition:
    """The index writers' pool gets its limit from the code location's settings as soon as
    the daemon starts (and again if the store changes), before runs race to create it."""

    @dg.sensor(
        name="index_writer_pool_sensor",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sets the limit of the index writers' pool (dam_index_writer) from the "
        "settings: 1 for a local Chroma folder, 4 for a server store.",
    )
    def index_writer_pool_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        changed = ensure_pool_limit(context.instance, settings)
        limit = index_writers(settings)
        return dg.SkipReason(f"pool limit {'set to' if changed else 'is'} {limit}")

    return index_writer_pool_sensor
