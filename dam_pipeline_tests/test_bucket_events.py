"""Following a bucket by its S3 event notifications (moto's S3 and SQS, one server): an
upload starts the run for its prefix without any listing, and what the events miss is
found by the listing, which then runs as the reconciliation."""

from __future__ import annotations

import boto3
import dagster as dg
import pytest

from dam_pipeline.definitions import build_definitions
from dam_pipeline.settings import Settings
from dam_pipeline.sources import S3Source, parse_s3_uri
from dam_pipeline.sources.events import BucketEventQueue
from dam_pipeline_tests.conftest import delete, s3_client, upload
from dam_pipeline_tests.test_s3_source import SensorDriver


@pytest.fixture
def queued(s3_settings: Settings) -> Settings:
    """The test bucket notifying an SQS queue of every object created or removed."""
    bucket, _ = parse_s3_uri(s3_settings.source)
    sqs = boto3.client("sqs", endpoint_url=s3_settings.s3_endpoint_url, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"{bucket}-events"[:80])["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3_client(s3_settings).put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    return s3_settings.replace(event_queue_url=url, sqs_endpoint_url=s3_settings.s3_endpoint_url)


def _no_listing(*args, **kwargs):
    raise AssertionError("the bucket was listed")


def test_an_upload_event_starts_its_prefix_without_listing(
    queued: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload(queued, {"trips/cat.jpg": "chelsea", "trips/notes.txt": b"not media"})
    events = SensorDriver(queued, instance, "bucket_event_sensor")
    with monkeypatch.context() as patched:
        patched.setattr(S3Source, "_pages", _no_listing)
        (request,) = events.tick()
        assert request.partition_key == "trips"
        assert request.tags["dam/changed"] == "1"  # the text file is not media
        assert events.tick() == []  # the messages were deleted once the run was asked for
    (ran,) = events.run([request]).values()
    assert ran["vector_index"]["indexed"] == 1

    delete(queued, ["trips/cat.jpg"])  # a deletion is an event too
    with monkeypatch.context() as patched:
        patched.setattr(S3Source, "_pages", _no_listing)
        (again,) = events.tick()
    assert again.partition_key == "trips"
    (ran,) = events.run([again]).values()
    assert ran["vector_index"]["indexed"] == 0


def test_a_missed_event_is_caught_by_the_reconciliation(
    queued: Settings, instance: dg.DagsterInstance
) -> None:
    upload(queued, {"trips/cat.jpg": "chelsea"})
    boto3.client("sqs", endpoint_url=queued.sqs_endpoint_url, region_name="us-east-1").purge_queue(
        QueueUrl=queued.event_queue_url
    )  # the event never arrives
    assert SensorDriver(queued, instance, "bucket_event_sensor").tick() == []
    (found,) = SensorDriver(queued, instance, "upload_sensor").tick()
    assert found.partition_key == "trips"

    defs = build_definitions(queued.replace(reconcile_interval_seconds=1800))
    assert defs.resolve_sensor_def("upload_sensor").minimum_interval_seconds == 1800
    assert defs.resolve_sensor_def("bucket_event_sensor").minimum_interval_seconds == 30
    plain = build_definitions(queued.replace(event_queue_url=""))
    assert plain.resolve_sensor_def("upload_sensor").minimum_interval_seconds == 30
    assert "bucket_event_sensor" not in {s.name for s in plain.sensors}


def test_events_name_only_media_under_the_library_root() -> None:
    queue = BucketEventQueue(None, "", bucket="photos", root="library", depth=1)

    def body(*keys: str, bucket: str = "photos") -> str:
        import json

        records = [{"s3": {"bucket": {"name": bucket}, "object": {"key": k}}} for k in keys]
        return json.dumps({"Records": records})

    assert queue._object_keys(body("library/caf%C3%A9+2024/a+b.jpg")) == [
        "library/café 2024/a b.jpg"
    ]
    assert queue._object_keys(body("library/x.jpg", bucket="other")) == []
    assert queue._object_keys('{"Event": "s3:TestEvent"}') == []
    assert queue._object_keys("not json") == []
    assert queue._relative("library/café 2024/a b.jpg") == "café 2024/a b.jpg"
    assert queue._relative("elsewhere/x.jpg") is None
