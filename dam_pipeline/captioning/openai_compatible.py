"""Any OpenAI-compatible vision endpoint (OpenAI, Ollama, vLLM, LM Studio ...)."""

from __future__ import annotations

from dam_pipeline.captioning.vision_llm import ChatVisionCaptioner
from dam_pipeline.llm_clients import openai_client
from dam_pipeline.rate_limit import RateLimiter


class OpenAICompatibleCaptioner(ChatVisionCaptioner):
    provider = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str = "",
        concurrency: int = 4,
        attempts: int = 5,
        timeout: float = 60.0,
        limiter: RateLimiter | None = None,
    ) -> None:
        if not model:
            raise ValueError(
                "The OpenAI-compatible captioner needs a model name (DAM_CAPTIONER_MODEL)."
            )
        super().__init__(model, concurrency=concurrency, attempts=attempts, limiter=limiter)
        self.client = openai_client(base_url, api_key, timeout)
