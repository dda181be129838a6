"""dam_pipeline: find images by describing them, and get grounded answers about them.

The domain (sources, imaging, captioning, embedding, vector stores, retrieval, reasoning)
lives in plain Python packages; the Dagster layer is in ``dam_pipeline.defs`` and the one
``Definitions`` object in ``dam_pipeline.definitions``.
"""

__version__ = "0.1.0"
