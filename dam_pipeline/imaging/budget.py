"""Decoding memory shared by the decoding threads of a process.

A thread count alone does not bound memory: one 81-megapixel PNG needs about as much as a
thousand phone photos decoded at reduced size, and PNG has no reduced-size decode. Each
decode first reserves its estimated bytes from one budget; a decode larger than the whole
budget waits until it can run alone. Peak memory then stays near the budget whatever the
images and the worker count.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BYTES_PER_PIXEL = 8
"""Decoded RGBA (4) plus the RGB copy the normalization makes (3), rounded up."""


class DecodeBudget:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(1, limit_bytes)
        self.in_use = 0
        self.peak = 0
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, estimated_bytes: int) -> Iterator[None]:
        """Hold ``estimated_bytes`` (at most the whole budget) while decoding."""
        need = min(max(0, estimated_bytes), self.limit)
        with self._changed:
            self._changed.wait_for(lambda: self.in_use + need <= self.limit)
            self.in_use += need
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= need
                self._changed.notify_all()


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def release_freed_memory() -> None:
    """Hand memory freed by a large decode back to the system (glibc keeps it in each
    thread's arena otherwise, so resident memory would grow with the worker count)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)
