"""Sensors that follow the source: new prefixes become partitions; uploads, overwrites and
deletions trigger runs of exactly the partitions they touch."""

import json
import shlex

import dagster as dg

from dam_pipeline.defs.jobs import ingest_job
from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.defs.resources import SourceResource, StorageResource
from dam_pipeline.keys import decode_prefix, encode_prefix
from dam_pipeline.sync import ProcessedVersions, follow_source


def _add_missing_partitions(
    context: dg.SensorEvaluationContext, keys: set[str]
) -> list[dg.AddDynamicPartitionsRequest]:
    existing = set(context.instance.get_dynamic_partitions(image_prefixes.name))
    new = sorted(keys - existing)
    return [image_prefixes.build_add_request(new)] if new else []


def prefix_discovery_sensor(
    context: dg.SensorEvaluationContext, source: SourceResource
) -> dg.SensorResult:
    """New prefixes become partitions. A registered prefix the source no longer lists has
    vanished: said once per prefix as an observation of its vector_index partition (the
    UI shows it there) and in the tick; its vectors stay until `dam forget-prefix`."""
    keys = {encode_prefix(prefix) for prefix in source.open().list_prefixes()}
    requests = _add_missing_partitions(context, keys)
    registered = set(context.instance.get_dynamic_partitions(image_prefixes.name))
    vanished = sorted(registered - keys)
    already_reported = set(json.loads(context.cursor or "[]"))
    observations = [
        dg.AssetObservation(
            asset_key="vector_index",
            partition=key,
            metadata={
                "vanished": True,
                "action": f"dam forget-prefix {shlex.quote(decode_prefix(key))} --yes",
            },
        )
        for key in vanished
        if key not in already_reported
    ]
    if vanished:
        context.log.warning(
            "vanished prefixes (no objects left; vectors kept until `dam forget-prefix`): %s",
            ", ".join(vanished),
        )
    summary = f"{len(keys)} prefixes, none new" + (
        f"; vanished: {', '.join(vanished)}" if vanished else ""
    )
    return dg.SensorResult(
        dynamic_partitions_requests=requests,
        asset_events=observations,
        cursor=json.dumps(vanished),
        skip_reason=None if requests or observations else summary,
    )


def upload_sensor(
    context: dg.SensorEvaluationContext, source: SourceResource, storage: StorageResource
) -> dg.SensorResult:
    known = ProcessedVersions(
        storage.state().manifests, context.instance.get_dynamic_partitions(image_prefixes.name)
    )
    budget = storage.settings.sensor_budget_seconds  # a tick lists this long (Dagster: 60 s)
    scan = follow_source(
        source.open(),
        context.cursor,
        known,
        budget,
        reconcile_seconds=storage.settings.reconcile_interval_seconds,
    )
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


def bucket_event_sensor(
    context: dg.SensorEvaluationContext, source: SourceResource, storage: StorageResource
) -> dg.SensorResult:
    """Runs ingest_job for each partition the bucket's event notifications name, without
    listing the bucket. The messages are deleted once the runs are requested; one that is
    lost (a tick that dies just then, an event never sent) is caught by the listing, which
    runs as the reconciliation (``upload_sensor``, every DAM_RECONCILE_INTERVAL_SECONDS)."""
    queue = source.event_queue()
    if queue is None:
        return dg.SensorResult(skip_reason="no event queue (DAM_EVENT_QUEUE_URL) for this source")
    batch = queue.read(storage.settings.sensor_budget_seconds)
    tick = int(context.cursor or 0) + 1
    keys = {encode_prefix(prefix): keys for prefix, keys in batch.changed.items()}
    runs = [
        dg.RunRequest(
            partition_key=key,
            run_key=f"event-{tick}-{key}",
            tags={"dam/changed": str(len(changed)), "dam/trigger": "bucket events"},
        )
        for key, changed in sorted(keys.items())
    ]
    partitions = _add_missing_partitions(context, set(keys))
    queue.acknowledge(batch.receipts)
    context.log.info(
        "%d event messages, %d objects in %d partitions (%d ignored), no listing",
        batch.messages,
        sum(len(changed) for changed in keys.values()),
        len(keys),
        batch.ignored,
    )
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=partitions,
        cursor=str(tick),
        skip_reason=None if runs else f"{batch.messages} event messages, nothing to ingest",
    )


def build_sensors(
    interval_seconds: int, event_queue: bool = False, reconcile_seconds: int = 3600
) -> list[dg.SensorDefinition]:
    """The sensors, evaluated at most every ``DAM_SENSOR_INTERVAL_SECONDS``. With an event
    queue, the events are read at that interval and the listing becomes the
    reconciliation, every ``DAM_RECONCILE_INTERVAL_SECONDS``."""
    sensors = [
        dg.sensor(
            minimum_interval_seconds=interval_seconds,
            description="Registers every prefix of the source as a partition (delimiter listing).",
        )(prefix_discovery_sensor),
        dg.sensor(
            job=ingest_job,
            minimum_interval_seconds=reconcile_seconds if event_queue else interval_seconds,
            description="Runs ingest_job for each partition with new, overwritten or deleted "
            "objects (a listing"
            + ("; the reconciliation of the bucket's events)." if event_queue else ")."),
        )(upload_sensor),
    ]
    if event_queue:
        sensors.append(
            dg.sensor(
                job=ingest_job,
                minimum_interval_seconds=interval_seconds,
                description="Runs ingest_job for each partition the bucket's S3 event "
                "notifications (SQS) name, without listing the bucket.",
            )(bucket_event_sensor)
        )
    return sensors
