"""Llama-4-Scout on Groq through the official ``groq`` client (the production captioner)."""

from __future__ import annotations

from typing import Any

from dam_pipeline.captioning.vision_llm import ChatVisionCaptioner
from dam_pipeline.llm_clients import groq_client

DEFAULT_GROQ_VISION_MODEL = "meta-llama/llama-4-scout-17b-16e-instruct"


class GroqCaptioner(ChatVisionCaptioner):
    provider = "groq"

    def __init__(
        self,
        api_key: str,
        model: str = DEFAULT_GROQ_VISION_MODEL,
        base_url: str | None = None,
        timeout: float = 30.0,
        **options: Any,
    ) -> None:
        """``options``: concurrency, attempts, limiter, breaker (``ChatVisionCaptioner``)."""
        super().__init__(model, timeout=timeout, **options)
        self.client = groq_client(
            api_key, base_url, timeout, "captioner (or set DAM_CAPTIONER=local)"
        )
