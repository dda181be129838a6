"""The five software-defined assets, one partition per bucket prefix.

raw_images → normalized_images → captions → embeddings → vector_index

Each asset passes a manifest (never image bytes) to the next and delegates the work to the
stage function of the same name in ``dam_pipeline.stages``. ``build_image_library_assets``
binds them to the configured providers, which the asset graph shows as kinds.
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
from dam_pipeline.settings import Settings

GROUP = "image_library"
ASSET_NAMES = ("raw_images", "normalized_images", "captions", "embeddings", "vector_index")


def raw_images(
    context: dg.AssetExecutionContext, source: SourceResource, storage: StorageResource
) -> dg.Output[Manifest]:
    """The image objects under the prefix: key, size, last-modified, content hash."""
    manifest = stages.list_raw_images(
        source.open(),
        decode_prefix(context.partition_key),
        previous=storage.previous_manifest("raw_images", context.partition_key),
        workers=storage.settings.workers,
    )
    return dg.Output(manifest, metadata=stage_metadata(manifest))


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
        max_side=storage.settings.max_side,
        max_pixels=storage.settings.max_image_pixels or None,
        workers=storage.settings.workers,
        decode_memory_bytes=storage.settings.decode_memory_mb * 2**20,
    )
    return dg.Output(manifest, metadata=stage_metadata(manifest))


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


def embeddings(
    captions: Manifest, embedder: EmbedderResource, storage: StorageResource
) -> dg.Output[Manifest]:
    """One normalized vector per caption; vectors live in the content cache."""
    manifest = stages.embed_partition(
        captions, embedder.build(), storage.cache(), storage.object_store()
    )
    return dg.Output(manifest, metadata=stage_metadata(manifest))


def vector_index(
    context: dg.AssetExecutionContext,
    embeddings: Manifest,
    source: SourceResource,
    vector_store: VectorStoreResource,
    storage: StorageResource,
) -> dg.Output[Manifest]:
    """The partition's vectors in the index, exactly one per indexed object."""
    with storage.index_writer() as lock:
        manifest = stages.index_partition(
            embeddings,
            vector_store.open(),
            storage.cache(),
            source_id=source.open().source_id,
            partition_key=context.partition_key,
            max_delete_share=vector_store.settings.max_delete_share,
            keywords=storage.keyword_index(),
        )
    manifest.summary["seconds_waiting_for_index"] = lock["seconds_waited"]
    if manifest.summary.get("deletion_blocked"):
        context.log.error(
            "Deletion sync refused for %s: %s vectors would vanish at once. Check the source.",
            context.partition_key,
            manifest.summary["would_delete"],
        )
    return dg.Output(manifest, metadata=stage_metadata(manifest))


CAPTIONER_KINDS = {"local": "pytorch", "groq": "groq", "openai": "openai"}
EMBEDDER_KINDS = {"sentence-transformers": "pytorch", "bedrock-titan": "bedrock"}
STORE_KINDS = {"chroma": "chroma", "pinecone": "pinecone", "pgvector": "postgres"}


REMOTE_RETRY = dg.RetryPolicy(
    max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
"""For steps that talk to a remote service. Each request is already retried briefly
(``dam_pipeline.retry``); this covers an outage of a minute or so. A retried step redoes
only what is missing: captions and vectors already made are in the content cache."""


def build_image_library_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    """The five assets, with kinds naming the configured source and providers, and a retry
    policy on the steps whose configured provider is reached over the network."""
    from_bucket = settings.source.startswith("s3://")
    state = "postgres" if settings.state_url.get_secret_value() else "sqlite"
    steps = {
        raw_images: ({"s3" if from_bucket else "python"}, from_bucket),
        normalized_images: ({"python", "pillow"}, from_bucket),
        captions: ({CAPTIONER_KINDS[settings.captioner]}, settings.captioner != "local"),
        embeddings: ({EMBEDDER_KINDS[settings.embedder]}, settings.embedder == "bedrock-titan"),
        vector_index: ({STORE_KINDS[settings.vector_store], state}, not settings.embedded_index),
    }
    return [
        dg.asset(
            partitions_def=image_prefixes,
            io_manager_key="manifest_io_manager",
            group_name=GROUP,
            kinds=kinds,
            retry_policy=REMOTE_RETRY if remote else None,
        )(compute)
        for compute, (kinds, remote) in steps.items()
    ]
