"""Reasoners: turn retrieved captions into an answer that cites its sources [S1]..[Sn]."""

from dam_pipeline.reasoning.base import Answer, Reasoner
from dam_pipeline.reasoning.extractive import ExtractiveReasoner

__all__ = ["Answer", "ExtractiveReasoner", "Reasoner", "build_reasoner"]


def build_reasoner(
    kind: str = "extractive",
    model: str = "",
    api_key: str = "",
    base_url: str = "",
    vision: bool = False,
    timeout: float = 30.0,
) -> Reasoner:
    """``extractive`` (offline, no LLM), ``groq`` (Llama-3.3) or ``openai`` (any
    OpenAI-compatible endpoint), by ``DAM_REASONER``."""
    if kind == "extractive":
        return ExtractiveReasoner()
    if kind == "groq":
        from dam_pipeline.reasoning.llm import DEFAULT_GROQ_REASONER_MODEL, GroqReasoner

        return GroqReasoner(
            api_key, model or DEFAULT_GROQ_REASONER_MODEL, base_url or None, timeout, vision=vision
        )
    if kind == "openai":
        from dam_pipeline.reasoning.llm import OpenAICompatibleReasoner

        return OpenAICompatibleReasoner(model, base_url or None, api_key, timeout, vision=vision)
    raise ValueError(f"Unknown reasoner {kind!r}: set DAM_REASONER to extractive, groq or openai.")
