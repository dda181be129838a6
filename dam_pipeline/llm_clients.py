"""Chat-completions clients for the remote captioners and reasoners, built one way: the
official SDK, our own timeout, and the SDK's retries off (``call_with_retries`` does them,
so backoff and logging are the same everywhere)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from dam_pipeline.costs import UNREPORTED, Usage, UsageMeter, chat_usage
from dam_pipeline.retry import is_timeout
from dam_pipeline.text import register_secret


def groq_client(api_key: str, base_url: str | None, timeout: float, used_for: str) -> Any:
    import groq

    if not api_key:
        raise ValueError(f"The Groq {used_for} needs GROQ_API_KEY in the environment.")
    register_secret(api_key)
    return groq.Groq(api_key=api_key, base_url=base_url or None, timeout=timeout, max_retries=0)


def openai_client(base_url: str | None, api_key: str, timeout: float) -> Any:
    import openai

    register_secret(api_key)
    return openai.OpenAI(
        api_key=api_key or "not-needed",  # local servers (Ollama, vLLM) accept any key
        base_url=base_url or None,
        timeout=timeout,
        max_retries=0,
    )


class UnreadableAnswer(ValueError):
    """The provider answered with a body that is not UTF-8 JSON."""


def metered_completion(
    client: Any, meters: Iterable[UsageMeter], model_id: str, images: int = 0, **request: Any
) -> Any:
    """One chat-completions request, its usage recorded in every meter: as reported, or,
    when it timed out or its body could not be read, as one request of unknown cost (the
    provider may have billed it)."""
    try:
        response = client.chat.completions.create(**request)
    except (UnicodeDecodeError, ValueError) as exc:  # the body itself is not UTF-8 JSON
        _record(meters, model_id, UNREPORTED + Usage(images=images))
        raise UnreadableAnswer(f"the answer is not UTF-8 JSON ({exc})") from None
    except Exception as exc:
        if is_timeout(exc):
            _record(meters, model_id, UNREPORTED + Usage(images=images))
        raise
    _record(meters, model_id, chat_usage(response, images=images))
    return response


def _record(meters: Iterable[UsageMeter], model_id: str, usage: Usage) -> None:
    for meter in meters:
        meter.record(model_id, usage)


def json_object_reply(content: str | None, malformed: type[ValueError]) -> dict[str, Any]:
    """A model's reply as the JSON object it was asked for (a code fence around it is
    tolerated); ``malformed`` is raised, saying what is wrong, for anything else."""
    if not content:
        raise malformed("the model returned no content")
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise malformed(f"the reply is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise malformed("the reply is not a JSON object")
    return data
