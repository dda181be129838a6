"""Any OpenAI-compatible vision endpoint (OpenAI, Ollama, vLLM, LM Studio ...)."""

from __future__ import annotations

from typing import Any

from dam_pipeline.captioning.vision_llm import ChatVisionCaptioner
from dam_pipeline.llm_clients import openai_client


class OpenAICompatibleCaptioner(ChatVisionCaptioner):
    provider = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str = "",
        timeout: float = 30.0,
        **options: Any,
    ) -> None:
        """``options``: concurrency, attempts, limiter, breaker (``ChatVisionCaptioner``)."""
        if not model:
            raise ValueError(
                "The OpenAI-compatible captioner needs a model name (DAM_CAPTIONER_MODEL)."
            )
        super().__init__(model, timeout=timeout, **options)
        self.client = openai_client(base_url, api_key, timeout)
