"""Any OpenAI-compatible vision endpoint (OpenAI, Ollama, vLLM, LM Studio ...)."""

from __future__ import annotations

from dam_pipeline.captioning.vision_llm import ChatVisionCaptioner


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
    ) -> None:
        import openai

        if not model:
            raise ValueError(
                "The OpenAI-compatible captioner needs a model name (DAM_CAPTIONER_MODEL)."
            )
        super().__init__(model, concurrency=concurrency, attempts=attempts)
        self.client = openai.OpenAI(
            api_key=api_key or "not-needed",  # local servers (Ollama, vLLM) accept any key
            base_url=base_url or None,
            timeout=timeout,
            max_retries=0,
        )
