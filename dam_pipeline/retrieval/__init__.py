"""Retrieval: from a question to ranked images."""

from dam_pipeline.retrieval.search import Hit, search

__all__ = ["Hit", "search"]
