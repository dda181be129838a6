"""The pipeline stages as plain functions, one module per asset of the same name.

Each takes the upstream manifest plus the components it needs, reuses what an earlier run
already computed, and returns a ``Manifest`` whose ``summary`` holds counts and timings.
The Dagster assets in ``dam_pipeline.defs.assets`` are thin wrappers around these.
"""

from dam_pipeline.stages.captions import caption_arriving, caption_partition
from dam_pipeline.stages.embeddings import embed_partition
from dam_pipeline.stages.faces import delete_all_faces, faces_partition
from dam_pipeline.stages.normalized_images import anything_new, normalize_partition
from dam_pipeline.stages.overlap import normalize_and_caption, overlap_worthwhile
from dam_pipeline.stages.raw_images import list_raw_images
from dam_pipeline.stages.vector_index import index_partition

__all__ = [
    "anything_new",
    "caption_arriving",
    "caption_partition",
    "delete_all_faces",
    "embed_partition",
    "faces_partition",
    "index_partition",
    "list_raw_images",
    "normalize_and_caption",
    "normalize_partition",
    "overlap_worthwhile",
]
