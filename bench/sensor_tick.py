"""How long one upload-sensor tick takes on a large bucket (moto's S3 server on loopback).

    python -m bench.sensor_tick --objects 100000

Fills a bucket with N small objects under 100 prefixes, then times a first tick (everything
is new) and a second tick (nothing changed) of ``upload_sensor`` on a real Dagster instance.
Dagster's default sensor evaluation limit is 60 s.
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

from dam_pipeline.defs.resources import resources_from_env
from dam_pipeline.defs.sensors import upload_sensor
from dam_pipeline.settings import Settings
from dam_pipeline_tests.servers import moto_server


def fill_bucket(client, bucket: str, objects: int, prefixes: int = 100) -> None:
    keys = [f"library/p{i % prefixes:03d}/img{i:07d}.jpg" for i in range(objects)]
    with ThreadPoolExecutor(16) as pool, tqdm(total=objects, desc="uploading", unit="obj") as bar:
        for _ in pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"x"), keys):
            bar.update()


def tick(
    settings: Settings, instance: dg.DagsterInstance, cursor: str | None
) -> tuple[float, dg.SensorResult]:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=resources_from_env(settings)
    ) as context:
        start = time.perf_counter()
        result = upload_sensor(context)
        return time.perf_counter() - start, result


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
        fill_bucket(client, "bench-sensor", objects)
        settings = Settings(
            data_dir=Path(tmp),
            source="s3://bench-sensor/library",
            s3_endpoint_url=endpoint,
            aws_region="us-east-1",
        )
        first_seconds, first = tick(settings, instance, None)
        for request in first.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        second_seconds, second = tick(settings, instance, first.cursor)
    return {
        "objects": objects,
        "first_tick_seconds": round(first_seconds, 2),
        "first_tick_run_requests": len(first.run_requests or []),
        "steady_tick_seconds": round(second_seconds, 2),
        "steady_tick_run_requests": len(second.run_requests or []),
        "cursor_bytes": len(second.cursor or ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.objects), indent=2))


if __name__ == "__main__":
    main()
