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

import threading
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
    FacesResource,
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


def normalized_images_and_captions(
    context: dg.AssetExecutionContext,
    raw_images: Manifests,
    source: SourceResource,
    captioner: CaptionerResource,
    storage: StorageResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """normalized_images (upright RGB JPEGs, longest side capped, stored by content hash;
    undecodable objects quarantined with their reason) and captions (a searchable
    description of every image, with tags, labels and colours) in one step, so that a
    remote captioner starts on the first decoded images instead of after the last
    (``stages/overlap.py``). Either asset can be materialized alone (the other's last
    manifest is read from the state); each keeps its own metadata and checks."""
    selected = context.selected_output_names
    settings, store = storage.settings, storage.object_store()
    opened = source.open() if "normalized_images" in selected else None
    places = components.build_place_naming(settings)
    captioning = _Captioning(context, captioner, storage) if "captions" in selected else None

    def normalize(key: str, raw: Manifest, previous: Manifest | None, on_ready=None) -> Manifest:
        return stages.normalize_partition(
            opened,
            raw,
            store,
            previous=previous,
            max_side=settings.max_side,
            max_pixels=settings.max_image_pixels or None,
            workers=settings.workers,
            decode_memory_bytes=settings.decode_memory_mb * 2**20,
            video=components.video_limits(settings),
            on_ready=on_ready,
            location=settings.location,
            gazetteer=places.gazetteer,
        )

    normalized: Manifests = {}
    captions: Manifests = {}
    for key in context.partition_keys:
        if key not in raw_images:
            continue  # listing failed for it: reported there
        if captioning is None:
            _one_partition(
                context,
                "normalized_images",
                key,
                normalized,
                lambda key=key: normalize(
                    key, raw_images[key], storage.previous_manifest("normalized_images", key)
                ),
            )
            continue
        if opened is None:  # captions alone, from the last normalized manifest
            upstream = storage.previous_manifest("normalized_images", key)
            if upstream is None:
                raise dg.Failure(
                    f"partition {key} has no normalized_images yet: materialize it first"
                )
            _one_partition(
                context,
                "captions",
                key,
                captions,
                lambda key=key, upstream=upstream: captioning.caption(key, upstream),
            )
            continue
        try:
            done, captioned = captioning.with_normalizing(key, raw_images[key], normalize)
        except Exception as exc:
            _failed(context, "normalized_images", key, exc)
            continue
        normalized[key] = done
        context.add_asset_metadata(
            stage_metadata(done), asset_key="normalized_images", partition_key=key
        )
        if isinstance(captioned, Exception):
            _failed(context, "captions", key, captioned)
        else:
            captions[key] = captioned
            captioning.record(key, captioned)
    if "normalized_images" in selected:
        yield dg.Output(normalized, output_name="normalized_images")
    if captioning is not None:
        captioning.finish()
        yield dg.Output(captions, output_name="captions")
        yield checks.quarantine_share(captions, settings.max_quarantine_share)


class _Captioning:
    """The caption stage's run-wide parts: the captioner, one budget for the run's
    partitions, spend records and previews."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        captioner: CaptionerResource,
        storage: StorageResource,
    ) -> None:
        self.context, self.storage = context, storage
        self.store, self.cache = storage.object_store(), storage.cache()
        self.built = captioner.build()
        self.budget = components.run_budget(storage.settings)
        if hasattr(self.built, "new_run"):  # a remote captioner: this run's breaker starts closed
            self.built.new_run()
        self.each = storage.cost_each(self.built, "captions")
        self._loading: threading.Thread | None = None
        self.overlap = stages.overlap_worthwhile(remote=storage.settings.captioner != "local")

    def _options(self, key: str) -> dict:
        return dict(
            budget=self.budget, prices=self.budget.prices, known_cost_each=self.each,
            previous=self.storage.previous_manifest("captions", key),
            retry_failed=self.storage.settings.retry_failed,
        )  # fmt: skip

    def caption(self, key: str, normalized: Manifest) -> Manifest:
        return stages.caption_partition(
            normalized, self.store, self.built, self.cache, **self._options(key)
        )

    def with_normalizing(
        self, key: str, raw: Manifest, normalize: Callable[..., Manifest]
    ) -> tuple[Manifest, Manifest | Exception]:
        """(normalized, captions or what captioning raised) of one partition: overlapped
        when the captioner is remote, one after the other when it shares this machine's
        cores (``overlap_worthwhile``)."""
        previous = self.storage.previous_manifest("normalized_images", key)
        if stages.anything_new(raw, previous):
            self._load_models()
        if not self.overlap:
            done = normalize(key, raw, previous)
            try:
                return done, self.caption(key, done)
            except Exception as exc:
                return done, exc
        options = self._options(key)
        return stages.normalize_and_caption(
            lambda ready: normalize(key, raw, previous, ready),
            lambda arriving, finished: stages.caption_arriving(
                arriving, finished, len(raw), self.store, self.built, self.cache, **options
            ),
        )

    def _load_models(self) -> None:
        """Local models start loading while the first images decode (an unchanged
        partition never loads them)."""
        if self._loading is None and hasattr(self.built, "load"):
            self._loading = threading.Thread(target=self.built.load, name="load", daemon=True)
            self._loading.start()

    def record(self, key: str, manifest: Manifest) -> None:
        self.storage.record_spend(self.context.run_id, key, "captions", manifest)
        self.context.add_asset_metadata(
            {**stage_metadata(manifest), "preview": caption_preview(manifest, self.store)},
            asset_key="captions",
            partition_key=key,
        )

    def finish(self) -> None:
        if stopped := getattr(
            self.built, "stopped", None
        ):  # no partition sends after a refused key
            raise dg.Failure(description=str(stopped), allow_retries=False)


def _one_partition(
    context: dg.AssetExecutionContext,
    asset: str,
    key: str,
    done: Manifests,
    work: Callable[[], Manifest],
) -> None:
    try:
        manifest = work()
    except Exception as exc:
        _failed(context, asset, key, exc)
        return
    done[key] = manifest
    context.add_asset_metadata(stage_metadata(manifest), asset_key=asset, partition_key=key)


def _failed(context: dg.AssetExecutionContext, asset: str, key: str, exc: Exception) -> None:
    """One partition's failure: the run's only partition fails the step (as Dagster shows
    it); with several, it is logged, marked in its metadata and left out of later steps."""
    if isinstance(exc, ProviderConfigurationError):  # a bad key: one line, and no retry
        exc = dg.Failure(description=str(exc), allow_retries=False)
    if len(context.partition_keys) == 1:
        raise exc
    context.log.error("%s failed for partition %s: %s: %s", asset, key, type(exc).__name__, exc)
    context.add_asset_metadata(
        {"failed": True, "error": f"{type(exc).__name__}: {exc}"[:500]},
        asset_key=asset,
        partition_key=key,
    )


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
    visual = embedder.build_visual()

    def embed(key: str, caption: Manifest) -> Manifest:
        manifest = stages.embed_partition(caption, built, cache, store, prices, each, visual)
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
    visual_store = vector_store.open_visual()
    places = components.build_place_naming(storage.settings)

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
                visual_store=visual_store,
                places=places,
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
    with store.batch_writes():  # pgvector: a large load builds its graph once, at the end
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


def faces(
    context: dg.AssetExecutionContext,
    normalized_images: Manifests,
    source: SourceResource,
    faces: FacesResource,
    storage: StorageResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Every face of the partition's images (box, descriptor, crop, quality), each put with
    a person: the nearest known one, or a new one (``stages/faces.py``). Names and a
    user's decisions are in the people store and survive every run."""
    describer, face_index = faces.build(), faces.open_index()
    people, source_id = storage.state().people, source.open().source_id
    if describer is None:
        raise dg.Failure("DAM_FACES is off: the faces stage has nothing to do", allow_retries=False)

    def find(key: str, normalized: Manifest) -> Manifest:
        with people.one_grouper():  # new faces are grouped one writer at a time
            return stages.faces_partition(
                normalized, storage.object_store(), describer, storage.cache(), people,
                face_index, source_id, key, storage.settings.max_delete_share,
            )  # fmt: skip

    done = each_partition(context, normalized_images, find)
    yield dg.Output(done)
    yield checks.faces_match_people(done, people)


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
    remote_captioner = settings.captioner != "local"
    steps: dict[Callable, tuple[set[str], bool]] = {
        raw_images: ({"s3" if from_bucket else "python"}, from_bucket),
        embeddings: ({EMBEDDER_KINDS[settings.embedder]}, settings.embedder == "bedrock-titan"),
        vector_index: ({STORE_KINDS[settings.vector_store], state}, not settings.embedded_index),
    }
    with warnings.catch_warnings():
        # the backfill policy is what the asset graph's backfills need; Dagster still
        # calls the parameter beta and says so on every load
        warnings.filterwarnings("ignore", "Parameter `backfill_policy`", dg.BetaWarning)
        assets = [_asset(compute, kinds, remote) for compute, (kinds, remote) in steps.items()]
        if settings.faces:
            assets.append(_asset(faces, {"dlib", state}, False))
        decoding_and_captioning = dg.multi_asset(
            outs={
                "normalized_images": _out({"python", "pillow"}),
                "captions": _out({CAPTIONER_KINDS[settings.captioner]}),
            },
            internal_asset_deps={
                "normalized_images": {dg.AssetKey("raw_images")},
                "captions": {dg.AssetKey("normalized_images")},
            },
            partitions_def=image_prefixes,
            can_subset=True,
            check_specs=[checks.QUARANTINE_SHARE],
            retry_policy=REMOTE_RETRY if from_bucket or remote_captioner else None,
            backfill_policy=dg.BackfillPolicy.single_run(),
        )(normalized_images_and_captions)
    return [assets[0], decoding_and_captioning, *assets[1:]]


def _out(kinds: set[str]) -> dg.AssetOut:
    return dg.AssetOut(
        io_manager_key="manifest_io_manager",
        group_name=GROUP,
        kinds=kinds,
        owners=OWNERS,
        is_required=False,  # either may be materialized alone
    )


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
    "faces": {"check_specs": [checks.FACES_MATCH_PEOPLE]},
    "vector_index": {
        "pool": INDEX_WRITER_POOL,
        "output_required": False,  # it records a materialization per partition it finishes
        "check_specs": [checks.INDEX_MATCHES_MANIFEST],
    },
}
