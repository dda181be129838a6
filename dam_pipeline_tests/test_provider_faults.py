"""A misbehaving provider costs little and stalls nothing: the vision captioner (the real
OpenAI client) against a local chat-completions server with fault modes, then whole
ingests where the key is wrong or the provider is down, and runs after it recovers."""

from __future__ import annotations

import json
import time

import pytest

from dam_pipeline import components
from dam_pipeline.captioning.openai_compatible import OpenAICompatibleCaptioner
from dam_pipeline.retry import CircuitBreaker, ProviderConfigurationError
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, photo, write_library
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion

GOOD = json.dumps({"description": "A cup of coffee on a saucer.", "tags": ["coffee"], "text": ""})
ERROR = {"error": {"message": "nope"}}


def good(method, path, body):
    return 200, chat_completion(GOOD, model=body["model"]), {}


@pytest.fixture
def server():
    with ScriptedHTTPServer(good) as running:
        yield running


def captioner(server, timeout: float = 2.0, threshold: int = 5) -> OpenAICompatibleCaptioner:
    made = OpenAICompatibleCaptioner(
        "vision", f"{server.url}/v1", timeout=timeout, breaker=CircuitBreaker(threshold)
    )
    made.base_delay = 0.01
    return made


IMAGE = photo("coffee").resize((64, 48))


@pytest.mark.parametrize(
    ("answers", "calls", "outcome"),
    [
        (
            [
                (
                    200,
                    chat_completion(json.dumps({"caption": "A cup of coffee.", "labels": ["cup"]})),
                    {},
                )
            ],
            1,
            "A cup of coffee.",
        ),
        (
            [(200, chat_completion(json.dumps({"foo": 1})), {}), (200, chat_completion(GOOD), {})],
            2,
            "A cup of",
        ),
        ([(200, chat_completion("Sure! Here is a caption: a cup."), {})] * 2, 2, "unusable answer"),
        (
            [(200, chat_completion('{"description": "A cup of co', finish="length"), {})] * 2,
            2,
            "cut off",
        ),
        ([(200, b'{"choices": [{"message": {"content": "caf\xe9"}}]}', {})] * 2, 2, "UTF-8"),
        ([(429, ERROR, {"retry-after": "0"}), (200, chat_completion(GOOD), {})], 2, "A cup of"),
        ([(500, ERROR, {}), (200, chat_completion(GOOD), {})], 2, "A cup of"),
        ([(400, {"error": {"message": "image too large"}}, {})], 1, "image too large"),
    ],
    ids=["other keys", "repaired", "prose", "cut off", "not utf-8", "429", "500", "400"],
)
def test_each_kind_of_answer_costs_at_most_two_calls(server, answers, calls, outcome) -> None:
    server.script(*answers)
    (result,) = captioner(server).caption_batch([IMAGE])
    assert len(server.requests) == calls
    assert outcome in (getattr(result, "text", None) or str(result))
    if len(answers) == 2 and answers[0][1] is not answers[1][1] and calls == 2:
        # the repair request asks for the provider's structured output
        repair = server.requests[1]["body"]["response_format"]
        assert repair["type"] in ("json_schema", "json_object")


def test_an_unusable_answer_names_what_was_wrong_and_how_it_began(server) -> None:
    server.script(*[(200, chat_completion("<html>" + "x" * 500), {})] * 2)
    (result,) = captioner(server).caption_batch([IMAGE])
    assert result.kind == "unusable answer" and "not JSON" in str(result)
    assert "<html>xxx" in str(result) and len(str(result)) < 500  # the first 200 characters


def test_a_slow_provider_is_bounded_by_the_deadline(server) -> None:
    server.script(*[(0, 3.0, {})] * 3)  # each request waits 3 s; the deadline is 0.4 s
    started = time.monotonic()
    made = captioner(server, timeout=0.4)
    (result,) = made.caption_batch([IMAGE])
    assert time.monotonic() - started < 2.5
    assert result.kind == "timeout" and len(server.requests) == 2  # a timeout retried once
    (usage,) = made.meter.snapshot().values()  # both may have been billed: unknown cost
    assert (usage.requests, usage.unknown_cost) == (2, 2)


def test_a_refused_key_stops_sending_at_once(server) -> None:
    server.script(*[(401, {"error": {"message": "Invalid API key"}}, {})] * 20)
    made = captioner(server)
    with pytest.raises(ProviderConfigurationError, match="OPENAI_API_KEY"):
        made.caption_batch([IMAGE])
    sent = len(server.requests)
    with pytest.raises(ProviderConfigurationError):
        made.caption_batch([IMAGE] * 4)
    assert sent <= 1 and len(server.requests) == sent  # nothing sent after the refusal


def test_a_provider_that_is_down_defers_after_a_few_failures(server) -> None:
    server.script(*[(503, ERROR, {})] * 200)
    made = captioner(server, threshold=2)
    made.attempts = 2
    results = made.caption_batch([IMAGE] * 12)
    kinds = [r.kind for r in results]
    assert kinds.count("provider unavailable") >= 6
    assert len(server.requests) <= 2 * 2 + 8  # the breaker opened: most images never sent


def _paid(settings: Settings, server) -> Settings:
    return settings.replace(
        captioner="openai",
        captioner_model="vision",
        captioner_base_url=f"{server.url}/v1",
        provider_failures_before_pause=2,
        llm_timeout=2.0,
    )


PHOTOS = {f"p/{n}.jpg": n for n in ("chelsea", "coffee", "rocket", "astronaut", "camera")}


def test_after_an_outage_the_next_run_finishes_with_nothing_captioned_twice(
    server, settings: Settings, instance
) -> None:
    write_library(settings.layout.library, PHOTOS)
    server.handler = lambda method, path, body: (503, ERROR, {})  # down
    paused = _paid(settings, server).replace(provider_pause_seconds=10.0)
    first = ingest(paused, instance)["p"]["captions"]
    assert first.get("deferred_by_reason", {}).get("provider unavailable", 0) >= 1
    assert first["deferred"] + first["failed"] == 5 and first["computed"] == 0
    assert len(server.requests) <= 2 + 4  # two failures, the requests in flight, no more
    board = components.open_state(paused).outages
    endpoint = f"openai {server.url}/v1"
    assert board.current(endpoint) is not None  # posted for every run
    server.handler = good  # the provider is back, but the outage posted still stands
    sent_before = len(server.requests)
    during = ingest(paused, instance)["p"]["captions"]
    assert len(server.requests) == sent_before  # another run: stopped without sending
    assert during["deferred_by_reason"]["provider unavailable"] == 5
    left, _ = board.current(endpoint)
    time.sleep(left + 0.1)  # the pause ends: the next run tries again
    second = ingest(paused, instance)["p"]
    assert second["vector_index"]["indexed"] == 5
    assert second["captions"]["computed"] == len(server.requests) - sent_before == 5  # once each


def test_dam_status_lists_what_failed_and_was_deferred_by_reason(
    server, settings: Settings, instance, dam
) -> None:
    write_library(settings.layout.library, PHOTOS)
    server.handler = lambda method, path, body: (200, chat_completion("no JSON here"), {})
    server.script((503, ERROR, {}), (503, ERROR, {}))  # and the provider stumbles first
    paid = _paid(settings, server).replace(provider_failures_before_pause=50)
    ingest(paid, instance)
    report = json.loads(dam(settings, "status", "--json").out)["p"]
    assert report["failed"] == 5 and report["captioned"] == 0
    unusable = report["failed_by_reason"]["unusable answer"]
    assert unusable["images"] == 5 and "not JSON" in unusable["example"]
    shown = dam(settings, "status").out
    assert "failed (unusable answer): 5" in shown


def test_a_wrong_key_fails_the_run_in_one_line_and_touches_no_image(
    server, settings: Settings, dam
) -> None:
    write_library(settings.layout.library, PHOTOS)
    server.script(*[(401, {"error": {"message": "Invalid API key"}}, {})] * 20)
    env = {
        "DAM_CAPTIONER": "openai",
        "DAM_CAPTIONER_MODEL": "vision",
        "DAM_CAPTIONER_BASE_URL": f"{server.url}/v1",
    }
    refused = dam(settings, "ingest", "-q", **env)
    assert refused.code == 1 and "FAILED" in refused.out and "OPENAI_API_KEY" in refused.out
    assert len(server.requests) <= 4  # the requests already in flight, no more
    server.replies.clear()
    fixed = dam(settings, "ingest", "-q", **env)
    assert fixed.code == 0 and "indexed 5" in fixed.out


def test_a_model_that_keeps_drifting_stops_costing_after_three_runs(
    server, settings: Settings, instance
) -> None:
    write_library(settings.layout.library, {"p/coffee.jpg": "coffee"})
    server.handler = lambda method, path, body: (200, chat_completion("no JSON here"), {})
    runs = [ingest(_paid(settings, server), instance)["p"]["captions"] for _ in range(4)]
    assert [r["requests"] for r in runs] == [2, 2, 2, 0]  # two calls a run, then none
    assert "--retry-failed" in runs[3]["quarantine"]
    again = ingest(_paid(settings, server).replace(retry_failed=True), instance)["p"]["captions"]
    assert again["requests"] == 2
