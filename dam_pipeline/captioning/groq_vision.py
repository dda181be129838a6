"""Llama-4-Scout on Groq through the official ``groq`` client (the production captioner)."""

from __future__ import annotations

from dam_pipeline.captioning.vision_llm import ChatVisionCaptioner

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
    ) -> None:
        import groq

        if not api_key:
            raise ValueError("The Groq captioner needs GROQ_API_KEY (or set DAM_CAPTIONER=local).")
        super().__init__(model, concurrency=concurrency, attempts=attempts)
        # Retries are ours (call_with_retries), so the client's own are off.
        self.client = groq.Groq(
            api_key=api_key, base_url=base_url or None, timeout=timeout, max_retries=0
        )
