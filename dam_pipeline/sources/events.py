"""Bucket events: S3 event notifications delivered to an SQS queue, read instead of listing
the whole bucket on every sensor tick.

A tick reads what the queue holds (no LIST request, whatever the bucket's size) and names
the partitions whose objects were created, overwritten or deleted. Events can be missed
(a queue's retention, a notification configured late), so the full listing stays as the
periodic reconciliation; an event is therefore a hint to look, never the record of truth.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from dam_pipeline.sources.base import is_media_key, partition_of

RECEIVE_BATCH = 10
"""SQS hands out at most ten messages a request."""


@dataclass
class EventBatch:
    """What one read of the queue found: partition prefix -> media keys that changed."""

    changed: dict[str, set[str]] = field(default_factory=dict)
    messages: int = 0
    receipts: list[str] = field(default_factory=list)
    ignored: int = 0
    """Events for objects outside the library's root, or not images or videos."""


class BucketEventQueue:
    """The SQS queue that a bucket's ``s3:ObjectCreated:*`` and ``s3:ObjectRemoved:*``
    notifications go to (``DAM_EVENT_QUEUE_URL``)."""

    def __init__(self, sqs_client: Any, queue_url: str, bucket: str, root: str, depth: int):
        self.sqs, self.queue_url = sqs_client, queue_url
        self.bucket, self.root, self.depth = bucket, root.strip("/"), depth

    def read(self, budget_seconds: float, max_messages: int = 10_000) -> EventBatch:
        """Every message available now (up to ``max_messages`` or ``budget_seconds``), not
        yet deleted: ``acknowledge`` them once the runs they asked for are requested."""
        batch = EventBatch()
        deadline = time.monotonic() + budget_seconds
        while batch.messages < max_messages and time.monotonic() < deadline:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=RECEIVE_BATCH,
                WaitTimeSeconds=0,
                VisibilityTimeout=max(30, int(budget_seconds) * 2),
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            for message in messages:
                batch.messages += 1
                batch.receipts.append(message["ReceiptHandle"])
                for key in self._object_keys(message.get("Body", "")):
                    relative = self._relative(key)
                    if relative is None or not is_media_key(relative):
                        batch.ignored += 1
                        continue
                    batch.changed.setdefault(partition_of(relative, self.depth), set()).add(
                        relative
                    )
        return batch

    def acknowledge(self, receipts: list[str]) -> None:
        """Delete the messages read (ten a request, as SQS allows)."""
        for start in range(0, len(receipts), RECEIVE_BATCH):
            entries = [
                {"Id": str(number), "ReceiptHandle": handle}
                for number, handle in enumerate(receipts[start : start + RECEIVE_BATCH])
            ]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)

    def _object_keys(self, body: str) -> list[str]:
        """The object keys of an S3 event notification (keys arrive URL-encoded, spaces as
        ``+``); a test event or a message of another shape names none."""
        try:
            event = json.loads(body)
        except ValueError:
            return []
        if isinstance(event, dict) and "Message" in event:  # delivered through SNS
            return self._object_keys(event["Message"])
        records = event.get("Records", []) if isinstance(event, dict) else []
        keys = []
        for record in records:
            s3 = record.get("s3", {}) if isinstance(record, dict) else {}
            if s3.get("bucket", {}).get("name") != self.bucket:
                continue
            key = s3.get("object", {}).get("key")
            if isinstance(key, str):
                keys.append(urllib.parse.unquote_plus(key))
        return keys

    def _relative(self, key: str) -> str | None:
        if not self.root:
            return key
        return key[len(self.root) + 1 :] if key.startswith(self.root + "/") else None
