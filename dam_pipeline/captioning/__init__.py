"""Captioners: the offline classifier-based default; vision LLMs are chosen by configuration."""

from __future__ import annotations

from functools import cache

from dam_pipeline.captioning.base import Caption, Captioner
from dam_pipeline.captioning.local import LocalCaptioner

__all__ = ["Caption", "Captioner", "LocalCaptioner", "build_captioner"]


@cache
def build_captioner(provider: str = "local", batch_size: int = 16) -> Captioner:
    """The captioner named by ``provider`` (``DAM_CAPTIONER``); built once per process."""
    if provider == "local":
        return LocalCaptioner(batch_size=batch_size)
    raise ValueError(
        f"Unknown captioner {provider!r}. This version offers 'local'; set DAM_CAPTIONER=local."
    )
