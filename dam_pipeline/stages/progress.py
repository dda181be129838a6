"""Progress bars and timing shared by the stages."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm

log = logging.getLogger("dam_pipeline")


def progress(total: int, description: str) -> tqdm:
    """A progress bar on terminals; silent (but still counting) elsewhere."""
    return tqdm(total=total, desc=description, unit="img", disable=None, leave=False)


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
