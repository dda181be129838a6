"""The nightly re-sync: every partition is materialized again (incremental, so unchanged
images cost nothing), which also applies deletions the sensors have not seen."""

import os

import dagster as dg

from dam_pipeline.defs.jobs import ingest_job
from dam_pipeline.defs.partitions import image_prefixes

RESYNC_CRON = os.environ.get("DAM_RESYNC_CRON", "0 3 * * *")


@dg.schedule(
    job=ingest_job,
    cron_schedule=RESYNC_CRON,
    description="Re-sync every partition (one run per prefix, tagged as one re-sync).",
)
def nightly_resync_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    stamp = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
    return [
        dg.RunRequest(
            partition_key=key, run_key=f"resync:{stamp}:{key}", tags={"dam/resync": stamp}
        )
        for key in context.instance.get_dynamic_partitions(image_prefixes.name)
    ]
