"""The one policy for calls to remote services (captioners, reasoners, re-rankers,
embedders), by kind of failure:

- transient (429, 5xx, connection errors, throttling): retried with backoff, honouring a
  server's Retry-After, within the item's total ``deadline``;
- a request that timed out: retried at most once (the provider may have billed it);
- configuration (401, 403, a model that does not exist): never retried; the caller stops
  sending (``ProviderConfigurationError`` names the setting to fix);
- an unusable answer is the caller's to judge (never transient here);
- a provider that keeps failing: ``CircuitBreaker`` stops the sending for a while.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from dam_pipeline.outages import OutageBoard
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


def is_timeout(exc: BaseException) -> bool:
    return "Timeout" in type(exc).__name__ or isinstance(exc, TimeoutError)


def is_configuration_error(exc: BaseException) -> bool:
    """Wrong key, no access, or no such model: retrying cannot help."""
    status = status_of(exc)
    if status in (401, 403):
        return True
    return status == 404 and "model" in str(exc).lower()


class ProviderConfigurationError(RuntimeError):
    """The provider refused our configuration (key, access, model): one line naming the
    setting to fix; nothing more is sent until it changes."""


class CircuitBreaker:
    """Stops sending to a provider that failed ``threshold`` times in a row, for
    ``cooldown`` seconds (then one request may try again): a provider that is down costs a
    few requests, not every image's retries. With a ``board`` (``dam_pipeline.outages``)
    the outage is shared under ``name``: a breaker that opens posts it, and every run that
    calls the same endpoint reads it (at most once a second) and stops too."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 60.0,
        board: OutageBoard | None = None,
        name: str = "",
    ) -> None:
        import threading

        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self.board = board
        self.name = name
        self.failures = 0
        self.opened_at: float | None = None
        self.reason = ""
        self._half_open = False
        self._board_read_at = -1.0
        self._lock = threading.Lock()

    def allows(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if self.opened_at is not None:
                if now - self.opened_at < self.cooldown:
                    return False
                self.opened_at, self.failures = None, self.threshold - 1
                self._half_open = True  # one request may try
                return True
            if self.board is not None and now - self._board_read_at >= 1.0:
                self._board_read_at = now
                posted = self._on_board(lambda: self.board.current(self.name))
                if posted:  # another run found it down: wait out what is left of its pause
                    left, self.reason = posted
                    self.opened_at = now - max(0.0, self.cooldown - left)
                    self.failures = self.threshold
                    return False
            return True

    def succeeded(self) -> None:
        with self._lock:
            clear = self._half_open and self.board is not None
            self.failures, self.opened_at, self._half_open = 0, None, False
        if clear:
            self._on_board(lambda: self.board.clear(self.name))

    def failed(self, reason: str) -> None:
        with self._lock:
            self.failures += 1
            self._half_open = False
            if self.failures < self.threshold or self.opened_at is not None:
                return
            self.opened_at, self.reason = time.monotonic(), reason
        log.error("provider unavailable after %d failures in a row: %s", self.failures, reason)
        if self.board is not None:
            self._on_board(lambda: self.board.post(self.name, self.cooldown, reason))

    def reset(self) -> None:
        """A new run: forget this process's count; an outage posted on the board stands."""
        with self._lock:
            self.failures, self.opened_at, self._half_open = 0, None, False
            self._board_read_at = -1.0

    def _on_board(self, action: Callable[[], T]) -> T | None:
        """The shared state is advice: when it cannot be read, each run decides alone."""
        try:
            return action()
        except Exception as exc:
            log.warning("the shared outage board is unavailable (%s); deciding alone", exc)
            return None


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
    deadline: float | None = None,
) -> T:
    """Run ``call``; on a transient error wait (Retry-After, else exponential with jitter)
    and try again, up to ``attempts`` times in all and, with a ``deadline`` (seconds), not
    past it in total. A timed-out request is tried again once at most. With a ``limiter``,
    every attempt first waits for its turn, and a 429 holds off everyone who shares it."""
    ends = time.monotonic() + deadline if deadline is not None else None
    timeouts = 0
    for attempt in range(1, attempts + 1):
        if limiter is not None:
            limiter.acquire()
        try:
            return call()
        except Exception as exc:
            timeouts += is_timeout(exc)
            if attempt == attempts or not transient(exc) or timeouts > 1:
                raise
            delay = retry_after_seconds(exc)
            if delay is None:
                delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (
                    0.5 + random.random() / 2
                )
            delay = min(delay, max_delay)
            if ends is not None and time.monotonic() + delay >= ends:
                raise  # no time left for another attempt
            log.warning(
                "%s failed (%s); retry %d/%d in %.1fs", what, exc, attempt, attempts - 1, delay
            )
            if limiter is not None and status_of(exc) == 429:
                limiter.hold_off(delay)  # the key is over its limit for every run, not only us
            else:
                sleep(delay)
    raise AssertionError("unreachable")
