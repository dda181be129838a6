"""Sensors that follow the source: new prefixes become partitions; uploads, overwrites and
deletions trigger runs of exactly the partitions they touch."""

import os

import dagster as dg

from dam_pipeline.defs.jobs import ingest_job
from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.defs.resources import SourceResource, StorageResource
from dam_pipeline.keys import encode_prefix
from dam_pipeline.sync import scan_changes

SENSOR_INTERVAL_SECONDS = int(os.environ.get("DAM_SENSOR_INTERVAL_SECONDS", "30"))
SENSOR_BUDGET_SECONDS = float(os.environ.get("DAM_SENSOR_BUDGET_SECONDS", "40"))
"""How long one tick may list before it continues on the next (Dagster allows 60 s)."""


def _add_missing_partitions(
    context: dg.SensorEvaluationContext, keys: set[str]
) -> list[dg.AddDynamicPartitionsRequest]:
    existing = set(context.instance.get_dynamic_partitions(image_prefixes.name))
    new = sorted(keys - existing)
    return [image_prefixes.build_add_request(new)] if new else []


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    description="Registers every prefix of the source as a partition (delimiter listing).",
)
def prefix_discovery_sensor(
    context: dg.SensorEvaluationContext, source: SourceResource
) -> dg.SensorResult:
    keys = {encode_prefix(prefix) for prefix in source.open().list_prefixes()}
    requests = _add_missing_partitions(context, keys)
    if not requests:
        return dg.SensorResult(skip_reason=f"{len(keys)} prefixes, none new")
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    description="Runs ingest_job for each partition with new, overwritten or deleted objects.",
)
def upload_sensor(
    context: dg.SensorEvaluationContext, source: SourceResource, storage: StorageResource
) -> dg.SensorResult:
    known = {
        key: {record.key: record.version for record in manifest}
        for key in context.instance.get_dynamic_partitions(image_prefixes.name)
        if (manifest := storage.previous_manifest("raw_images", key)) is not None
    }
    scan = scan_changes(source.open(), context.cursor, known, SENSOR_BUDGET_SECONDS)
    runs = [
        dg.RunRequest(
            partition_key=key,
            run_key=scan.run_key(key),
            tags={
                "dam/changed": str(len(scan.changed.get(key, []))),
                "dam/deleted": str(len(scan.deleted.get(key, []))),
            },
        )
        for key in scan.partitions_with_changes()
    ]
    context.log.info(
        "%d objects listed (%s); %d partitions with changes",
        scan.objects,
        "complete pass" if scan.complete else "continues next tick",
        len(runs),
    )
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=_add_missing_partitions(context, scan.partitions),
        cursor=scan.cursor,
        skip_reason=None if runs else f"{scan.objects} objects, nothing changed",
    )
