"""The five software-defined assets, one partition per bucket prefix.

raw_images → normalized_images → captions → embeddings → vector_index

Each asset passes a manifest (never image bytes) to the next and delegates the work to the
stage function of the same name in ``dam_pipeline.stages``.
"""

import dagster as dg

from dam_pipeline import stages
from dam_pipeline.defs.metadata import caption_preview, stage_metadata
from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.defs.resources import (
    CaptionerResource,
    EmbedderResource,
    SourceResource,
    StorageResource,
    VectorStoreResource,
)
from dam_pipeline.keys import decode_prefix
from dam_pipeline.manifests import Manifest

ASSET_DEFAULTS = dict(
    partitions_def=image_prefixes,
    io_manager_key="manifest_io_manager",
    group_name="image_library",
)


@dg.asset(**ASSET_DEFAULTS, kinds={"python"})
def raw_images(
    context: dg.AssetExecutionContext, source: SourceResource, storage: StorageResource
) -> dg.Output[Manifest]:
    """The image objects under the prefix: key, size, last-modified, content hash."""
    manifest = stages.list_raw_images(
        source.open(),
        decode_prefix(context.partition_key),
        previous=storage.previous_manifest("raw_images", context.partition_key),
        workers=storage.workers,
    )
    return dg.Output(manifest, metadata=stage_metadata(manifest))


@dg.asset(**ASSET_DEFAULTS, kinds={"python"})
def normalized_images(
    context: dg.AssetExecutionContext,
    raw_images: Manifest,
    source: SourceResource,
    storage: StorageResource,
) -> dg.Output[Manifest]:
    """Upright RGB JPEGs, longest side capped, stored by content hash; undecodable objects
    are quarantined with their reason."""
    manifest = stages.normalize_partition(
        source.open(),
        raw_images,
        storage.object_store(),
        previous=storage.previous_manifest("normalized_images", context.partition_key),
        max_side=storage.max_side,
        max_pixels=storage.max_image_pixels or None,
        workers=storage.workers,
    )
    return dg.Output(manifest, metadata=stage_metadata(manifest))


@dg.asset(**ASSET_DEFAULTS, kinds={"pytorch"})
def captions(
    normalized_images: Manifest, captioner: CaptionerResource, storage: StorageResource
) -> dg.Output[Manifest]:
    """A searchable description of every image, with tags, labels and colours."""
    store = storage.object_store()
    manifest = stages.caption_partition(
        normalized_images, store, captioner.build(), storage.cache()
    )
    metadata = stage_metadata(manifest)
    metadata["preview"] = caption_preview(manifest, store)
    return dg.Output(manifest, metadata=metadata)


@dg.asset(**ASSET_DEFAULTS, kinds={"pytorch"})
def embeddings(
    captions: Manifest, embedder: EmbedderResource, storage: StorageResource
) -> dg.Output[Manifest]:
    """One normalized vector per caption; vectors live in the content cache."""
    manifest = stages.embed_partition(
        captions, embedder.build(), storage.cache(), storage.object_store()
    )
    return dg.Output(manifest, metadata=stage_metadata(manifest))


@dg.asset(**ASSET_DEFAULTS, kinds={"chroma"})
def vector_index(
    context: dg.AssetExecutionContext,
    embeddings: Manifest,
    source: SourceResource,
    vector_store: VectorStoreResource,
    storage: StorageResource,
) -> dg.Output[Manifest]:
    """The partition's vectors in the index, exactly one per indexed object."""
    manifest = stages.index_partition(
        embeddings,
        vector_store.open(),
        storage.cache(),
        source_id=source.open().source_id,
        partition_key=context.partition_key,
        max_delete_share=vector_store.max_delete_share,
        keywords=storage.keyword_index(),
    )
    if manifest.summary.get("deletion_blocked"):
        context.log.error(
            "Deletion sync refused for %s: %s vectors would vanish at once. Check the source.",
            context.partition_key,
            manifest.summary["would_delete"],
        )
    return dg.Output(manifest, metadata=stage_metadata(manifest))


image_library_assets = [raw_images, normalized_images, captions, embeddings, vector_index]
