"""One request rate for every run that captions with the same key (issue 15, item 5).

The limiter's two implementations (SQLite for one machine, Postgres for many) take turns
from one schedule; captioners that each hold their own limiter — as separate runs do —
together stay under a chat-completions server that enforces a request limit with 429 and
Retry-After, and lose no image.
"""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dam_pipeline import components
from dam_pipeline.captioning import CaptionerError, ImageInput
from dam_pipeline.captioning.openai_compatible import OpenAICompatibleCaptioner
from dam_pipeline.rate_limit import PostgresRateLimiter, RateLimiter, SqliteRateLimiter
from dam_pipeline.retry import retry_after_seconds
from dam_pipeline_tests.conftest import jpeg_bytes, photo
from dam_pipeline_tests.servers import RateLimitedChat, ScriptedHTTPServer


@pytest.fixture(params=["sqlite", "postgres"])
def make_limiter(request, tmp_path: Path):
    """Builds limiters on one shared schedule, each as a separate run would hold it."""
    if request.param == "sqlite":
        return lambda name, rpm: SqliteRateLimiter(tmp_path / "rate_limits.sqlite", name, rpm)
    url = request.getfixturevalue("database_url")
    return lambda name, rpm: PostgresRateLimiter(url, name, rpm)


def _take_turns(limiters: list[RateLimiter], each: int) -> list[float]:
    """Every limiter acquires ``each`` turns from two threads; the times the turns came."""
    times: list[float] = []
    lock = threading.Lock()

    def work(limiter: RateLimiter) -> None:
        for _ in range(each):
            limiter.acquire()
            with lock:
                times.append(time.monotonic())

    with ThreadPoolExecutor(max_workers=2 * len(limiters)) as pool:
        list(pool.map(work, [lim for lim in limiters for _ in range(2)]))
    return sorted(times)


def test_runs_sharing_a_limit_take_turns_at_the_rate(make_limiter) -> None:
    limiters = [make_limiter("provider-key", 1200) for _ in range(3)]  # 20 a second
    times = _take_turns(limiters, each=4)
    assert len(times) == 24
    # 24 turns at 20 a second need 23 intervals of 50 ms, whoever asked.
    assert times[-1] - times[0] >= 23 * 0.05 * 0.95
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert sorted(gaps)[len(gaps) // 2] >= 0.04


def test_another_key_has_its_own_schedule(make_limiter) -> None:
    slow = make_limiter("one-key", 60)  # one a second
    slow.acquire()
    started = time.monotonic()
    make_limiter("another-key", 60).acquire()
    assert time.monotonic() - started < 0.5


def test_a_hold_off_makes_every_sharer_wait(make_limiter) -> None:
    told, other = make_limiter("held-key", 6000), make_limiter("held-key", 6000)
    told.hold_off(0.4)
    started = time.monotonic()
    waited = other.acquire()
    assert time.monotonic() - started >= 0.35
    assert waited >= 0.35


def test_retry_after_is_read_in_seconds_or_milliseconds() -> None:
    class Response:
        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers

    class Refused(Exception):
        def __init__(self, headers: dict[str, str]) -> None:
            self.response = Response(headers)

    assert retry_after_seconds(Refused({"retry-after": "2"})) == 2.0
    assert retry_after_seconds(Refused({"retry-after-ms": "250", "retry-after": "1"})) == 0.25
    assert retry_after_seconds(Refused({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None


def _caption_at_once(server_url: str, limiters: list[RateLimiter | None], images: int) -> list:
    """Each limiter (or none) is one run's captioner; all caption ``images`` photos at once."""
    jpeg = jpeg_bytes(photo("coffee"))
    captioners = [
        OpenAICompatibleCaptioner(
            "vision-test", f"{server_url}/v1", "sk-test", concurrency=4, limiter=limiter
        )
        for limiter in limiters
    ]
    with ThreadPoolExecutor(max_workers=len(captioners)) as pool:
        batches = pool.map(lambda c: c.caption_batch([ImageInput(data=jpeg)] * images), captioners)
        return [caption for batch in batches for caption in batch]


def test_captioners_of_several_runs_stay_under_the_provider_limit(make_limiter) -> None:
    provider = RateLimitedChat(limit=10, window=1.0, latency=0.05)
    with ScriptedHTTPServer(provider) as server:
        # Set just under the key's limit, as the README advises: 9 a second, shared.
        limiters = [make_limiter("groq key", 540) for _ in range(3)]
        captions = _caption_at_once(server.url, limiters, images=8)
    assert not [c for c in captions if isinstance(c, CaptionerError)]
    assert len(captions) == 24
    assert provider.refused <= 1  # a late thread may still graze the window, and is retried
    assert provider.sustained_rate() >= 0.8 * 10


def test_without_a_shared_limit_the_same_runs_are_refused() -> None:
    """The case the limiter exists for: each run retrying on its own gets 429s."""
    provider = RateLimitedChat(limit=10, window=1.0, latency=0.05)
    with ScriptedHTTPServer(provider) as server:
        captions = _caption_at_once(server.url, [None, None, None], images=8)
    assert provider.refused > 3
    assert len(captions) == 24


def test_the_setting_gives_remote_captioners_one_schedule_per_key(tmp_path: Path) -> None:
    from dam_pipeline.settings import Settings

    remote = dict(
        data_dir=tmp_path,
        captioner="openai",
        captioner_model="vision-test",
        captioner_base_url="http://127.0.0.1:9/v1",
        openai_api_key="sk-do-not-store",
    )
    assert components.build_captioner(Settings(**remote)).limiter is None  # 0: no shared limit
    limited = components.build_captioner(
        Settings(**remote, captioner_requests_per_minute=120)
    ).limiter
    assert isinstance(limited, SqliteRateLimiter)
    assert limited.path == Settings(data_dir=tmp_path).layout.rate_limits
    assert limited.requests_per_minute == 120 and "sk-do-not-store" not in limited.name
    other_key = Settings(
        **{**remote, "openai_api_key": "sk-other"}, captioner_requests_per_minute=120
    )
    assert components.build_captioner(other_key).limiter.name != limited.name
    shared = Settings(
        **remote,
        captioner_requests_per_minute=120,
        state_url="postgresql://dam@127.0.0.1:9/dam",
        vector_store="pgvector",
    )
    assert isinstance(components.build_captioner(shared).limiter, PostgresRateLimiter)
    local = components.build_captioner(
        Settings(data_dir=tmp_path, captioner_requests_per_minute=120)
    )
    assert getattr(local, "limiter", None) is None  # nothing remote to pace
