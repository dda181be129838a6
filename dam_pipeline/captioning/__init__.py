"""Captioners: the offline classifier-based default; vision LLMs are chosen by configuration."""

from __future__ import annotations

from functools import cache

from dam_pipeline.captioning.base import Caption, Captioner, CaptionerError, ImageInput
from dam_pipeline.captioning.local import LocalCaptioner
from dam_pipeline.outages import OutageBoard
from dam_pipeline.rate_limit import RateLimiter
from dam_pipeline.retry import CircuitBreaker

__all__ = [
    "Caption",
    "Captioner",
    "CaptionerError",
    "ImageInput",
    "LocalCaptioner",
    "build_captioner",
]


@cache
def build_captioner(
    provider: str = "local",
    batch_size: int = 16,
    model: str = "",
    api_key: str = "",
    base_url: str = "",
    concurrency: int = 4,
    ocr: str = "auto",
    limiter: RateLimiter | None = None,
    people: bool = True,
    timeout: float = 30.0,
    failures_before_pause: int = 5,
    pause_seconds: float = 60.0,
    outages: OutageBoard | None = None,
) -> Captioner:
    """The captioner named by ``provider`` (``DAM_CAPTIONER``): ``local`` (offline
    classifier), ``groq`` (Llama-4-Scout) or ``openai`` (any OpenAI-compatible endpoint).
    Built once per process and configuration; a remote one sends through ``limiter``; the
    local one detects people unless ``people`` is false (``DAM_DETECT_PEOPLE``), and stops
    sending for ``pause_seconds`` after ``failures_before_pause`` failures in a row, posting
    the outage on ``outages`` so that every run calling the same endpoint stops too."""
    if provider == "local":
        return LocalCaptioner(batch_size=batch_size, ocr=ocr, people=people)
    breaker = CircuitBreaker(
        failures_before_pause, pause_seconds, outages, f"{provider} {base_url or 'default'}"
    )
    if provider == "groq":
        from dam_pipeline.captioning.groq_vision import DEFAULT_GROQ_VISION_MODEL, GroqCaptioner

        return GroqCaptioner(
            api_key,
            model or DEFAULT_GROQ_VISION_MODEL,
            base_url or None,
            concurrency=concurrency,
            limiter=limiter,
            timeout=timeout,
            breaker=breaker,
        )
    if provider == "openai":
        from dam_pipeline.captioning.openai_compatible import OpenAICompatibleCaptioner

        return OpenAICompatibleCaptioner(
            model,
            base_url or None,
            api_key,
            concurrency=concurrency,
            limiter=limiter,
            timeout=timeout,
            breaker=breaker,
        )
    raise ValueError(f"Unknown captioner {provider!r}: set DAM_CAPTIONER to local, groq or openai.")
