"""normalized_images and captions of one partition, together: the captioner takes images
as they are decoded, through a bounded queue, instead of waiting for the last decode.

The two stages stay what they are (``normalize_partition``, ``caption_arriving``), with
their own manifests and summaries; only their timing changes. Decoding runs in its own
thread (its pool releases the GIL) while the models run in this one, so neither waits for
the other: the stage times add up to more than the wall time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from dam_pipeline.manifests import Manifest, NormalizedImage

QUEUE_CHUNKS = 64
"""How many decoded objects may wait for the captioner: enough to keep a batch ready,
few enough that decoding does not run far ahead of the models (its memory is bounded
by the decode budget either way; a queued record holds no pixels)."""

_DONE = object()

Normalize = Callable[[Callable[[list[NormalizedImage]], None]], Manifest]
"""Runs the normalize stage, handing each object's records to the callback as it is done."""
Caption = Callable[[Iterable[list[NormalizedImage]], Callable[[], Manifest]], Manifest]
"""Runs the caption stage over chunks of records as they arrive, then the whole manifest."""


def overlap_worthwhile(remote: bool) -> bool:
    """Whether to overlap at all. A remote captioner waits on the network, and decoding
    fills that wait: overlapped. The local models already keep this machine's two cores
    busy (1.8 of 2 while captioning); decoding beside them made a 300-photo partition
    slower here (5.8-6.3 img/s against 6.5-6.7 one after the other, measured in turn in one
    process), so they run one after the other."""
    return remote


def normalize_and_caption(
    normalize: Normalize, caption: Caption, queue_chunks: int = QUEUE_CHUNKS
) -> tuple[Manifest, Manifest | Exception]:
    """(normalized manifest, captions manifest or the exception captioning raised). A
    captioning failure does not stop the decoding: the normalized manifest is complete
    either way, as if the two had run one after the other. A normalize failure is raised.
    """
    chunks: queue.Queue = queue.Queue(maxsize=queue_chunks)
    outcome: dict[str, object] = {}
    started = time.perf_counter()

    def produce() -> None:
        try:
            outcome["normalized"] = normalize(chunks.put)
        except BaseException as exc:  # raised again in the caller's thread
            outcome["error"] = exc
        finally:
            chunks.put(_DONE)

    producer = threading.Thread(target=produce, name="normalize", daemon=True)
    producer.start()

    def arriving() -> Iterator[list[NormalizedImage]]:
        while (item := chunks.get()) is not _DONE:
            batch = list(item)
            while True:  # take whatever else is ready, so a batch fills in one step
                try:
                    more = chunks.get_nowait()
                except queue.Empty:
                    break
                if more is _DONE:
                    chunks.put(_DONE)  # seen again by the outer loop
                    break
                batch.extend(more)
            yield batch
        chunks.put(_DONE)  # the stream stays ended for whoever reads it next

    def finished() -> Manifest:
        producer.join()
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["normalized"]  # type: ignore[return-value]

    try:
        captions: Manifest | Exception = caption(arriving(), finished)
    except Exception as exc:
        captions = exc
        _drain(chunks)  # let the decoding finish: the producer may be waiting to put
    normalized = finished()
    normalized.summary["seconds_normalize_and_caption"] = round(time.perf_counter() - started, 3)
    return normalized, captions


def _drain(chunks: queue.Queue) -> None:
    """Take and drop what the producer puts until it is done."""
    while chunks.get() is not _DONE:
        pass
    chunks.put(_DONE)
