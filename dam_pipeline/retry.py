"""Retries with exponential backoff for calls to remote services (captioners, reasoners,
embedders): retry what is transient (429, 5xx, connection errors, throttling), honour a
server's Retry-After, and give up with a clear error after the last attempt."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from dam_pipeline.rate_limit import RateLimiter

T = TypeVar("T")
log = logging.getLogger("dam_pipeline")

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an SDK error (groq, openai, pinecone, botocore), if it has one."""
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if status is None:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):  # botocore ClientError
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        else:
            status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int | str) and str(status).isdigit() else None


def is_transient(exc: BaseException) -> bool:
    status = status_of(exc)
    if status is not None:
        return status in RETRYABLE_STATUS
    name = type(exc).__name__
    return any(word in name for word in ("Connection", "Timeout", "Throttl")) or isinstance(
        exc, ConnectionError | TimeoutError
    )


def retry_after_seconds(exc: BaseException) -> float | None:
    """How long the server asked to wait: ``retry-after-ms`` (OpenAI) or ``retry-after`` in
    seconds (Groq, most others); None if it did not say (an HTTP date is not honoured)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) / scale
        except ValueError:
            continue
    return None


def call_with_retries(
    call: Callable[[], T],
    what: str,
    attempts: int = 5,
    base_delay: float = 1.0,
    max_delay: float = 30.0,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
    limiter: RateLimiter | None = None,
) -> T:
    """Run ``call``; on a transient error wait (Retry-After, else exponential with jitter)
    and try again, up to ``attempts`` times in all. With a ``limiter``, every attempt first
    waits for its turn, and a 429 holds off everyone who shares the limit."""
    for attempt in range(1, attempts + 1):
        if limiter is not None:
            limiter.acquire()
        try:
            return call()
        except Exception as exc:
            if attempt == attempts or not transient(exc):
                raise
            delay = retry_after_seconds(exc)
            if delay is None:
                delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (
                    0.5 + random.random() / 2
                )
            delay = min(delay, max_delay)
            log.warning(
                "%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, attempts - 1, delay
            )
            if limiter is not None and status_of(exc) == 429:
                limiter.hold_off(delay)  # the key is over its limit for every run, not only us
            else:
                sleep(delay)
    raise AssertionError("unreachable")
