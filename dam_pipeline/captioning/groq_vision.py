"""Llama-4-Scout on Groq through the official ``groq`` client (the production captioner)."""

from __future__ import annotations

from dam_pipeline.captioning.vision_llm import ChatVisionCaptioner
from dam_pipeline.llm_clients import groq_client
from dam_pipeline.rate_limit import RateLimiter

DEFAULT_GROQ_VISION_MODEL = "meta-llama/llama-4-scout-17b-16e-instruct"


class GroqCaptioner(ChatVisionCaptioner):
    provider = "groq"

    def __init__(
        self,
        api_key: str,
        model: str = DEFAULT_GROQ_VISION_MODEL,
        base_url: str | None = None,
        concurrency: int = 4,
        attempts: int = 5,
        timeout: float = 60.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        super().__init__(model, concurrency=concurrency, attempts=attempts, limiter=limiter)
        self.client = groq_client(
            api_key, base_url, timeout, "captioner (or set DAM_CAPTIONER=local)"
        )
