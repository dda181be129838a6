"""Progress bars and timing shared by the stages."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

from dam_pipeline.text import RedactSecrets

log = logging.getLogger("dam_pipeline")
log.addFilter(RedactSecrets())  # every module logs through this one logger

_shown: bool | None = None
"""None: bars on terminals only; True: always, on ``_stream``; False: never."""
_stream: TextIO | None = None


def show_progress(shown: bool | None, stream: TextIO | None = None) -> None:
    """Where bars go. The CLI passes its terminal here: Dagster captures a step's own
    stdout and stderr into compute logs, where a bar helps nobody."""
    global _shown, _stream
    _shown, _stream = shown, stream


def progress(total: int, description: str) -> tqdm:
    """A progress bar on terminals; silent (but still counting) elsewhere."""
    disable = None if _shown is None else not _shown
    return tqdm(
        total=total, desc=description, unit="img", disable=disable, leave=False, file=_stream
    )


@contextmanager
def timed(summary: dict, name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        summary[name] = round(time.perf_counter() - start, 3)


def batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
