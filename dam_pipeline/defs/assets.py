"""The five software-defined assets, one partition per bucket prefix.

raw_images → normalized_images → captions → embeddings → vector_index

Each asset passes manifests (never image bytes) to the next and delegates the work to the
stage function of the same name in ``dam_pipeline.stages``.

A run may cover many partitions (a backfill runs as one run, ``BackfillPolicy.single_run``):
every step then works through the run's partitions one by one, so process start-up and model
loading are paid once per run. Partitions stay independent: each gets its own metadata, and
one whose step fails is left out of the later steps (its previous manifests stay), reported
in its metadata and the log, and fails the run at the end, while the others are indexed and
materialized (``vector_index`` records a materialization per partition it finished).
"""

import warnings
from collections.abc import Callable, Iterator, Mapping

import dagster as dg

from dam_pipeline import components, stages
from dam_pipeline.defs import checks
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
from dam_pipeline.retry import ProviderConfigurationError
from dam_pipeline.settings import Settings

GROUP = "image_library"
ASSET_NAMES = ("raw_images", "normalized_images", "captions", "embeddings", "vector_index")
OWNERS = ["team:dam_pipeline"]
INDEX_WRITER_POOL = "dam_index_writer"
"""The Dagster pool of the step that writes the vector index (limit: ``dam init-home``)."""

Manifests = dict[str, Manifest]
"""Partition key -> that partition's manifest, for the partitions of the run."""


def each_partition(
    context: dg.AssetExecutionContext,
    upstream: Mapping[str, Manifest] | None,
    work: Callable[[str, Manifest | None], Manifest],
) -> Manifests:
    """Run ``work`` for each partition of the run that its upstream step finished; a
    partition whose work fails is logged, marked in its metadata and left out."""
    keys = context.partition_keys
    done: Manifests = {}
    for key in keys:
        if upstream is not None and key not in upstream:
            continue  # an earlier step failed for it: reported there
        try:
            manifest = work(key, upstream[key] if upstream is not None else None)
        except Exception as exc:
            if len(keys) == 1:
                raise  # one partition: the run fails with the step, as Dagster shows it
            context.log.exception("%s failed for partition %s", context.asset_key.path[-1], key)
            context.add_asset_metadata(
                {"failed": True, "error": f"{type(exc).__name__}: {exc}"[:500]}, partition_key=key
            )
            continue
        context.add_asset_metadata(stage_metadata(manifest), partition_key=key)
        done[key] = manifest
    return done


def raw_images(
    context: dg.AssetExecutionContext, source: SourceResource, storage: StorageResource
) -> Manifests:
    """The image objects under the prefix: key, size, last-modified, content hash."""
    opened = source.open()
    return each_partition(
        context,
        None,
        lambda key, _: stages.list_raw_images(
            opened,
            decode_prefix(key),
            previous=storage.previous_manifest("raw_images", key),
            workers=storage.settings.workers,
        ),
    )


def normalized_images(
    context: dg.AssetExecutionContext,
    raw_images: Manifests,
    source: SourceResource,
    storage: StorageResource,
) -> Manifests:
    """Upright RGB JPEGs, longest side capped, stored by content hash; undecodable objects
    are quarantined with their reason."""
    opened, settings = source.open(), storage.settings
    return each_partition(
        context,
        raw_images,
        lambda key, raw: stages.normalize_partition(
            opened,
            raw,
            storage.object_store(),
            previous=storage.previous_manifest("normalized_images", key),
            max_side=settings.max_side,
            max_pixels=settings.max_image_pixels or None,
            workers=settings.workers,
            decode_memory_bytes=settings.decode_memory_mb * 2**20,
            video=components.video_limits(settings),
        ),
    )


def captions(
    context: dg.AssetExecutionContext,
    normalized_images: Manifests,
    captioner: CaptionerResource,
    storage: StorageResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """A searchable description of every image, with tags, labels and colours."""
    store, built, cache = storage.object_store(), captioner.build(), storage.cache()
    budget = components.run_budget(storage.settings)  # one for the run's partitions
    if hasattr(built, "new_run"):  # a remote captioner: this run's breaker starts closed
        built.new_run()
    each = storage.cost_each(built, "captions")

    def caption(key: str, normalized: Manifest) -> Manifest:
        try:
            manifest = stages.caption_partition(
                normalized, store, built, cache, budget=budget, prices=budget.prices,
                known_cost_each=each, previous=storage.previous_manifest("captions", key),
                retry_failed=storage.settings.retry_failed,
            )  # fmt: skip
        except ProviderConfigurationError as exc:  # one line; the images stay as they were
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        storage.record_spend(context.run_id, key, "captions", manifest)
        context.add_asset_metadata({"preview": caption_preview(manifest, store)}, partition_key=key)
        return manifest

    done = each_partition(context, normalized_images, caption)
    if stopped := getattr(built, "stopped", None):  # no partition sends after a refused key
        raise dg.Failure(description=str(stopped), allow_retries=False)
    yield dg.Output(done)
    yield checks.quarantine_share(done, storage.settings.max_quarantine_share)


def embeddings(
    context: dg.AssetExecutionContext,
    captions: Manifests,
    embedder: EmbedderResource,
    storage: StorageResource,
) -> Manifests:
    """One normalized vector per caption; vectors live in the content cache."""
    built, cache, store = embedder.build(), storage.cache(), storage.object_store()
    prices = components.price_table(storage.settings)
    each = storage.cost_each(built, "embeddings")

    def embed(key: str, caption: Manifest) -> Manifest:
        manifest = stages.embed_partition(caption, built, cache, store, prices, each)
        storage.record_spend(context.run_id, key, "embeddings", manifest)
        return manifest

    return each_partition(context, captions, embed)


def vector_index(
    context: dg.AssetExecutionContext,
    embeddings: Manifests,
    source: SourceResource,
    vector_store: VectorStoreResource,
    storage: StorageResource,
) -> Iterator[dg.AssetMaterialization]:
    """The partition's vectors in the index, exactly one per indexed object. A
    materialization is recorded per partition as it is finished; the run fails at the end
    if any partition of it failed at any step."""
    store, source_id = vector_store.open(), source.open().source_id

    def index(key: str, embedded: Manifest) -> Manifest:
        with storage.index_writer() as lock:
            manifest = stages.index_partition(
                embedded,
                store,
                storage.cache(),
                source_id=source_id,
                partition_key=key,
                max_delete_share=vector_store.settings.max_delete_share,
                keywords=storage.keyword_index(),
            )
        manifest.summary["seconds_waiting_for_index"] = lock["seconds_waited"]
        if manifest.summary.get("deletion_blocked"):
            context.log.error(
                "Deletion sync refused for %s: %s vectors would vanish at once. Check the source.",
                key,
                manifest.summary["would_delete"],
            )
        storage.state().manifests.write("vector_index", key, manifest)
        return manifest

    finished = {}
    for key in context.partition_keys:
        if key not in embeddings:
            continue
        try:
            manifest = index(key, embeddings[key])
        except Exception:
            if len(context.partition_keys) == 1:
                raise
            context.log.exception("vector_index failed for partition %s", key)
            continue
        finished[key] = manifest
        yield dg.AssetMaterialization(
            asset_key="vector_index", partition=key, metadata=stage_metadata(manifest)
        )
    yield checks.index_matches_manifest(finished, store)
    failed = [key for key in context.partition_keys if key not in finished]
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} of {len(context.partition_keys)} partitions failed "
            f"({', '.join(failed[:10])}); the others are indexed. See each step's log.",
            metadata={"failed": dg.MetadataValue.json(failed), "finished": len(finished)},
        )


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
    """The five assets, with kinds naming the configured source and providers, a retry
    policy on the steps whose provider is reached over the network, one run per backfill,
    and the index writer in its pool."""
    from_bucket = settings.source.startswith("s3://")
    state = "postgres" if settings.state_url.get_secret_value() else "sqlite"
    steps: dict[Callable, tuple[set[str], bool]] = {
        raw_images: ({"s3" if from_bucket else "python"}, from_bucket),
        normalized_images: ({"python", "pillow"}, from_bucket),
        captions: ({CAPTIONER_KINDS[settings.captioner]}, settings.captioner != "local"),
        embeddings: ({EMBEDDER_KINDS[settings.embedder]}, settings.embedder == "bedrock-titan"),
        vector_index: ({STORE_KINDS[settings.vector_store], state}, not settings.embedded_index),
    }
    with warnings.catch_warnings():
        # the backfill policy is what the asset graph's backfills need; Dagster still
        # calls the parameter beta and says so on every load
        warnings.filterwarnings("ignore", "Parameter `backfill_policy`", dg.BetaWarning)
        return [_asset(compute, kinds, remote) for compute, (kinds, remote) in steps.items()]


def _asset(compute: Callable, kinds: set[str], remote: bool) -> dg.AssetsDefinition:
    return dg.asset(
        partitions_def=image_prefixes,
        io_manager_key="manifest_io_manager",
        group_name=GROUP,
        kinds=kinds,
        owners=OWNERS,
        retry_policy=REMOTE_RETRY if remote else None,
        backfill_policy=dg.BackfillPolicy.single_run(),
        **EXTRA.get(compute.__name__, {}),
    )(compute)


EXTRA: dict[str, dict] = {
    "captions": {"check_specs": [checks.QUARANTINE_SHARE]},
    "vector_index": {
        "pool": INDEX_WRITER_POOL,
        "output_required": False,  # it records a materialization per partition it finishes
        "check_specs": [checks.INDEX_MATCHES_MANIFEST],
    },
}
