"""One writer at a time where the storage allows no more: an advisory file lock.

The embedded Chroma folder has a single writer. Whatever starts the write (a run launched
by the daemon, `dam ingest`, a test), it takes this lock first, so two writers never
overlap while everything else (queries, other stages, other partitions' decoding and
captioning) goes on. The operating system releases it if the holder dies, even by SIGKILL.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("dam_pipeline")


@contextmanager
def exclusive(path: Path, what: str) -> Iterator[dict]:
    """Hold an exclusive lock on ``path``; yields a dict that gets ``seconds_waited``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    waited = {"seconds_waited": 0.0}
    with open(path, "a+") as handle:
        started = time.monotonic()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for %s: another writer holds it", what)
            fcntl.flock(handle, fcntl.LOCK_EX)
        waited["seconds_waited"] = round(time.monotonic() - started, 3)
        try:
            yield waited
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
