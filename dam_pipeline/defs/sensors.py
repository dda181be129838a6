"""Sensors that follow the source: new prefixes become partitions; uploads, overwrites and
deletions trigger runs of exactly the partitions they touch."""

import dagster as dg

from dam_pipeline.defs.jobs import ingest_job
from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.defs.resources import SourceResource, StorageResource
from dam_pipeline.keys import encode_prefix
from dam_pipeline.sync import scan_changes


def _add_missing_partitions(
    context: dg.SensorEvaluationContext, keys: set[str]
) -> list[dg.AddDynamicPartitionsRequest]:
    existing = set(context.instance.get_dynamic_partitions(image_prefixes.name))
    new = sorted(keys - existing)
    return [image_prefixes.build_add_request(new)] if new else []


def prefix_discovery_sensor(
    context: dg.SensorEvaluationContext, source: SourceResource
) -> dg.SensorResult:
    keys = {encode_prefix(prefix) for prefix in source.open().list_prefixes()}
    requests = _add_missing_partitions(context, keys)
    if not requests:
        return dg.SensorResult(skip_reason=f"{len(keys)} prefixes, none new")
    return dg.SensorResult(dynamic_partitions_requests=requests)


def upload_sensor(
    context: dg.SensorEvaluationContext, source: SourceResource, storage: StorageResource
) -> dg.SensorResult:
    known = {
        key: {record.key: record.version for record in manifest}
        for key in context.instance.get_dynamic_partitions(image_prefixes.name)
        if (manifest := storage.previous_manifest("raw_images", key)) is not None
    }
    budget = storage.settings.sensor_budget_seconds  # a tick lists this long (Dagster: 60 s)
    scan = scan_changes(source.open(), context.cursor, known, budget)
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


def build_sensors(interval_seconds: int) -> list[dg.SensorDefinition]:
    """The two sensors, evaluated at most every ``DAM_SENSOR_INTERVAL_SECONDS``."""
    return [
        dg.sensor(
            minimum_interval_seconds=interval_seconds,
            description="Registers every prefix of the source as a partition (delimiter listing).",
        )(prefix_discovery_sensor),
        dg.sensor(
            job=ingest_job,
            minimum_interval_seconds=interval_seconds,
            description="Runs ingest_job for each partition with new, overwritten or deleted "
            "objects.",
        )(upload_sensor),
    ]
