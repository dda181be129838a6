"""The nightly re-sync: every partition is materialized again (incremental, so unchanged
images cost nothing), which also applies deletions the sensors have not seen."""

import dagster as dg

from dam_pipeline.defs.jobs import ingest_job
from dam_pipeline.defs.partitions import image_prefixes


def resync_requests(instance: dg.DagsterInstance, scheduled_at_iso: str) -> list[dg.RunRequest]:
    """One run per registered partition, all tagged as the same re-sync."""
    return [
        dg.RunRequest(
            partition_key=key,
            run_key=f"resync:{scheduled_at_iso}:{key}",
            tags={"dam/resync": scheduled_at_iso},
        )
        for key in instance.get_dynamic_partitions(image_prefixes.name)
    ]


def build_resync_schedule(cron: str) -> dg.ScheduleDefinition:
    """``DAM_RESYNC_CRON`` (default 03:00 every night)."""

    @dg.schedule(
        name="nightly_resync_schedule",
        job=ingest_job,
        cron_schedule=cron,
        description="Re-sync every partition (one run per prefix, tagged as one re-sync).",
    )
    def nightly_resync_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        stamp = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
        return resync_requests(context.instance, stamp)

    return nightly_resync_schedule
