"""The Groq and OpenAI-compatible captioners against a local server that speaks the
chat-completions protocol: what the clients send, and how they handle 429, 500 and
malformed replies. No network is reachable, so this is the real client on loopback."""

from __future__ import annotations

import base64
import json

import pytest

from dam_pipeline.captioning import CaptionerError, build_captioner
from dam_pipeline.captioning.groq_vision import DEFAULT_GROQ_VISION_MODEL, GroqCaptioner
from dam_pipeline.captioning.openai_compatible import OpenAICompatibleCaptioner
from dam_pipeline.captioning.vision_llm import PROMPT, MalformedCaption, parse_caption_json
from dam_pipeline_tests.conftest import photo
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion

GOOD = json.dumps(
    {
        "description": "A tabby cat lies on a wooden floor, looking at the camera.",
        "tags": ["Cat", "tabby", "pet", "indoors"],
        "text": "",
    }
)


def _ok(method, path, body):
    return 200, chat_completion(GOOD, model=body["model"]), {}


@pytest.fixture
def server():
    with ScriptedHTTPServer(_ok) as running:
        yield running


def groq(server: ScriptedHTTPServer, **kwargs) -> GroqCaptioner:
    captioner = GroqCaptioner(api_key="gsk-test", base_url=server.url, **kwargs)
    captioner.base_delay = 0.01
    return captioner


def test_groq_sends_model_prompt_and_the_image_and_parses_the_reply(server) -> None:
    image = photo("chelsea")
    (caption,) = groq(server).caption_batch([image])
    assert caption.text.startswith("A tabby cat") and caption.tags == [
        "cat",
        "tabby",
        "pet",
        "indoors",
    ]

    (request,) = server.requests
    assert request["path"] == "/openai/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer gsk-test"
    body = request["body"]
    assert body["model"] == DEFAULT_GROQ_VISION_MODEL == "meta-llama/llama-4-scout-17b-16e-instruct"
    assert body["response_format"] == {"type": "json_object"}
    text_part, image_part = body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": PROMPT}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = base64.b64decode(url.split(",", 1)[1])
    assert sent[:2] == b"\xff\xd8" and len(sent) > 1000  # a real JPEG of the photo


def test_rate_limits_and_server_errors_are_retried(server) -> None:
    server.script(
        (429, {"error": {"message": "rate limited"}}, {"retry-after": "0"}),
        (500, {"error": {"message": "boom"}}, {}),
        (503, {"error": {"message": "overloaded"}}, {}),
    )
    (caption,) = groq(server).caption_batch([photo("coffee")])
    assert not isinstance(caption, CaptionerError)
    assert len(server.requests) == 4


def test_malformed_json_is_repaired_once_then_reported_per_image(server) -> None:
    server.script((200, chat_completion("Sure! Here is a cat."), {}))
    (caption,) = groq(server).caption_batch([photo("coffee")])
    assert caption.text.startswith("A tabby cat") and len(server.requests) == 2

    server.requests.clear()
    server.script(*[(200, chat_completion("{not json"), {})] * 3)
    (failed,) = groq(server, attempts=3).caption_batch([photo("coffee")])
    assert isinstance(failed, CaptionerError) and "not JSON" in str(failed)
    assert failed.kind == "unusable answer"
    assert len(server.requests) == 2  # the request and one repair: a bad answer is paid twice


def test_a_batch_with_failures_keeps_every_image_accounted_for(server) -> None:
    server.script(*[(500, {"error": {"message": "down"}}, {})] * 2)
    results = groq(server, attempts=2, concurrency=1).caption_batch(
        [photo("coffee"), photo("rocket")]
    )
    assert isinstance(results[0], CaptionerError) and "500" in str(results[0])
    assert not isinstance(results[1], CaptionerError)


def test_openai_compatible_endpoint_uses_the_same_prompt(server) -> None:
    captioner = OpenAICompatibleCaptioner(model="llava:13b", base_url=f"{server.url}/v1")
    (caption,) = captioner.caption_batch([photo("rocket")])
    assert caption.tags[0] == "cat"
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["model"] == "llava:13b"
    assert request["body"]["messages"][0]["content"][0]["text"] == PROMPT
    assert captioner.fingerprint == "openai/llava:13b/vision-json-v1"


def test_strict_parsing() -> None:
    assert (
        parse_caption_json('```json\n{"description": "x", "tags": [], "text": ""}\n```').text == "x"
    )
    for bad in ['{"tags": []}', '["a"]', '{"description": "x", "tags": "cat"}', ""]:
        with pytest.raises(MalformedCaption):
            parse_caption_json(bad)


def test_configuration_chooses_the_provider() -> None:
    with pytest.raises(ValueError, match="GROQ_API_KEY"):
        build_captioner("groq")
    with pytest.raises(ValueError, match="local, groq or openai"):
        build_captioner("blip")


def test_failed_captions_are_kept_out_of_the_index_and_retried_next_run(
    server, settings, instance
) -> None:

    from dam_pipeline.api import search
    from dam_pipeline_tests.conftest import ingest, write_library

    settings = settings.replace(
        captioner="openai", captioner_model="llava", captioner_base_url=f"{server.url}/v1"
    )
    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea", "pets/rocket.jpg": "rocket"})
    server.script(*[(400, {"error": {"message": "model not loaded"}}, {})] * 2)
    first = ingest(settings, instance)["pets"]
    assert first["captions"]["failed"] == 2 and first["captions"]["computed"] == 0
    assert "model not loaded" in first["captions"]["quarantine"]
    assert first["vector_index"]["indexed"] == 0

    second = ingest(settings, instance)["pets"]
    assert second["captions"]["failed"] == 0 and second["captions"]["computed"] == 2
    assert second["vector_index"]["indexed"] == 2
    assert search("a tabby cat", settings=settings)[0].caption.startswith("A tabby cat lies")
