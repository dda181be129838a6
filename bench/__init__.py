"""Benchmarks for dam_pipeline (``make bench``); they use the project's public interfaces."""
