"""How long upload-sensor ticks take on a large bucket (moto's S3 server on loopback).

    python -m bench.sensor_tick --objects 100000 --json bench/results/sensor-tick-100000.json

Fills a bucket with N small objects under 100 prefixes, then ticks ``upload_sensor`` on a
real Dagster instance until one full pass over the bucket is done (everything is new), and
once more (no run executed in between, so it must produce no new run key). Each tick
lists for at most DAM_SENSOR_BUDGET_SECONDS (40 s) and resumes where it stopped; Dagster's
default sensor
evaluation limit is 60 s. Also times the bare paged listing, to separate the endpoint's
cost from the sensor's own.

Then the event path: the bucket notifies an SQS queue (moto's), 5 objects are uploaded to
one prefix, and ``bucket_event_sensor`` ticks once. LIST requests are counted for every
tick (the source's listing pages).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import dagster as dg
from tqdm import tqdm

from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.resources import build_resources
from dam_pipeline.settings import Settings
from dam_pipeline.sources import S3Source
from dam_pipeline_tests.servers import moto_server


def fill_bucket(client, bucket: str, objects: int, prefixes: int = 100) -> None:
    keys = [f"library/p{i % prefixes:03d}/img{i:07d}.jpg" for i in range(objects)]
    with ThreadPoolExecutor(16) as pool, tqdm(total=objects, desc="uploading", unit="obj") as bar:
        for _ in pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x"), keys):
            bar.update()


LISTED = [0]
"""LIST requests made by the source (pages), counted by ``_counting_pages``."""


def _counting_pages(pages):
    def counted(*args, **kwargs):
        for page in pages(*args, **kwargs):
            LISTED[0] += 1
            yield page

    return counted


S3Source._pages = _counting_pages(S3Source._pages)


def tick(
    settings: Settings,
    instance: dg.DagsterInstance,
    cursor: str | None,
    sensor_name: str = "upload_sensor",
) -> tuple[float, dg.SensorResult]:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=build_resources(settings)
    ) as context:
        sensor = build_definitions(settings).resolve_sensor_def(sensor_name)
        start = time.perf_counter()
        result = sensor(context)
        return time.perf_counter() - start, result


def full_pass(settings: Settings, instance: dg.DagsterInstance, cursor: str | None) -> dict:
    ticks, requests, run_keys = [], 0, set()
    LISTED[0] = 0
    while True:
        seconds, result = tick(settings, instance, cursor)
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        ticks.append(round(seconds, 2))
        requests += len(result.run_requests or [])
        run_keys.update(r.run_key for r in result.run_requests or [])
        cursor = result.cursor
        if json.loads(cursor).get("start_after") is None:
            return {
                "tick_seconds": ticks,
                "list_requests": LISTED[0],
                "run_requests": requests,
                "cursor": cursor,
                "keys": run_keys,
            }


def measure(objects: int) -> dict:
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    with (
        moto_server() as endpoint,
        tempfile.TemporaryDirectory() as tmp,
        dg.instance_for_test() as instance,
    ):
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench-sensor")
        start = time.perf_counter()
        fill_bucket(client, "bench-sensor", objects)
        fill_seconds = time.perf_counter() - start
        settings = Settings(
            data_dir=Path(tmp),
            source="s3://bench-sensor/library",
            s3_endpoint_url=endpoint,
            aws_region="us-east-1",
        )
        start = time.perf_counter()
        for _ in client.get_paginator("list_objects_v2").paginate(Bucket="bench-sensor"):
            pass
        listing_seconds = time.perf_counter() - start
        first = full_pass(settings, instance, None)
        second = full_pass(settings, instance, first["cursor"])
        events = event_tick(client, endpoint, settings, instance)
    return {
        "objects": objects,
        "moto_fill_seconds": round(fill_seconds, 1),
        "bare_listing_seconds": round(listing_seconds, 2),
        "first_pass_tick_seconds": first["tick_seconds"],
        "first_pass_run_requests": first["run_requests"],
        "second_pass_tick_seconds": second["tick_seconds"],
        # No run ran in between, so the same changes come back with the same run keys, which
        # Dagster never launches twice: new keys must be 0.
        "second_pass_new_run_keys": len(second["keys"] - first["keys"]),
        "max_tick_seconds": max(first["tick_seconds"] + second["tick_seconds"]),
        "cursor_bytes": len(second["cursor"]),
        "list_requests_per_pass": second["list_requests"],
        "event_tick": events,
    }


def event_tick(client, endpoint: str, settings: Settings, instance: dg.DagsterInstance) -> dict:
    """5 uploads to one prefix, announced through SQS, and one tick of the event sensor."""
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    url = sqs.create_queue(QueueName="bench-sensor-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    client.put_bucket_notification_configuration(
        Bucket="bench-sensor",
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    for i in range(5):
        client.put_object(Bucket="bench-sensor", Key=f"library/p007/new{i}.jpg", Body=b"x")
    evented = settings.replace(event_queue_url=url, sqs_endpoint_url=endpoint)
    LISTED[0] = 0
    seconds, result = tick(evented, instance, None, "bucket_event_sensor")
    return {
        "tick_seconds": round(seconds, 3),
        "list_requests": LISTED[0],
        "run_requests": [r.partition_key for r in result.run_requests or []],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = measure(args.objects)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
