"""Resources: one per domain interface, configured from the environment.

Each resource only holds configuration and builds the domain object; which provider is
used is decided here by configuration, never inside an asset.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from dam_pipeline.cache import ContentCache
from dam_pipeline.captioning import Captioner, build_captioner
from dam_pipeline.embedding import Embedder, build_embedder
from dam_pipeline.imaging import ObjectStore
from dam_pipeline.manifests import Manifest, manifest_path, read_manifest_if_exists, write_manifest
from dam_pipeline.reasoning import Reasoner, build_reasoner
from dam_pipeline.retrieval import KeywordIndex
from dam_pipeline.settings import PROVIDER_KEYS, DataLayout, Settings
from dam_pipeline.sources import Source, open_source
from dam_pipeline.vector_stores import VectorStore, open_vector_store


class SourceResource(dg.ConfigurableResource):
    """Where the images live: a folder path, or ``s3://bucket[/root-prefix]`` reached through
    dagster-aws's S3Resource (AWS S3, MinIO, Supabase Storage, R2: only the endpoint differs)."""

    uri: str
    partition_depth: int = 1
    s3: S3Resource
    url_expiry_seconds: int = 3600
    public_url_template: str = ""

    def open(self) -> Source:
        return open_source(
            self.uri,
            depth=self.partition_depth,
            s3_client=self.s3.get_client() if self.uri.startswith("s3://") else None,
            url_expiry_seconds=self.url_expiry_seconds,
            public_url_template=self.public_url_template,
        )


class StorageResource(dg.ConfigurableResource):
    """The data directory: normalized images, manifests and the model-output cache."""

    data_dir: str
    max_side: int = 1024
    max_image_pixels: int = 0
    """Decompression-bomb limit; 0 keeps Pillow's default (about 89 megapixels)."""
    workers: int = 4

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_dir))

    def object_store(self) -> ObjectStore:
        return ObjectStore(self.layout.objects)

    def cache(self) -> ContentCache:
        return ContentCache(self.layout.cache)

    def keyword_index(self) -> KeywordIndex:
        return KeywordIndex(self.layout.keywords)

    def previous_manifest(self, asset: str, partition_key: str) -> Manifest | None:
        """What this asset wrote for the partition last time: the basis of incremental runs."""
        return read_manifest_if_exists(manifest_path(self.layout.manifests, asset, partition_key))


class CaptionerResource(dg.ConfigurableResource):
    """``local`` (offline classifier + OCR), ``groq`` (Llama-4-Scout) or ``openai`` (any
    OpenAI-compatible vision endpoint)."""

    provider: str = "local"
    model: str = ""
    base_url: str = ""
    api_key: str | None = None
    batch_size: int = 16
    concurrency: int = 4
    ocr: str = "auto"

    def build(self) -> Captioner:
        return build_captioner(
            self.provider,
            self.batch_size,
            model=self.model,
            api_key=self.api_key or "",
            base_url=self.base_url,
            concurrency=self.concurrency,
            ocr=self.ocr,
        )


class EmbedderResource(dg.ConfigurableResource):
    """``sentence-transformers`` (captions) or ``bedrock-titan`` (images, Titan multimodal)."""

    provider: str = "sentence-transformers"
    model: str = "all-MiniLM-L6-v2"
    batch_size: int = 64
    dimension: int = 1024
    region: str = ""
    endpoint_url: str = ""

    def build(self) -> Embedder:
        return build_embedder(
            self.model,
            self.batch_size,
            self.provider,
            self.dimension,
            self.region,
            self.endpoint_url,
        )


class VectorStoreResource(dg.ConfigurableResource):
    """``chroma`` (embedded folder ``path``, or a server at ``url``) or ``pinecone``."""

    kind: str = "chroma"
    collection: str = "dam_images"
    path: str = ""
    url: str = ""
    pinecone_api_key: str | None = None
    pinecone_host: str = ""
    pinecone_index_name: str = ""
    pinecone_namespace: str = ""
    max_delete_share: float = 0.5

    def open(self) -> VectorStore:
        return open_vector_store(
            self.kind,
            self.collection,
            Path(self.path) if self.path else None,
            self.url or None,
            pinecone_api_key=self.pinecone_api_key or "",
            pinecone_host=self.pinecone_host,
            pinecone_index_name=self.pinecone_index_name,
            namespace=self.pinecone_namespace,
        )


class ReasonerResource(dg.ConfigurableResource):
    """``extractive`` (offline), ``groq`` (Llama-3.3) or ``openai`` (any compatible endpoint)."""

    kind: str = "extractive"
    model: str = ""
    base_url: str = ""
    api_key: str | None = None
    vision: bool = False
    timeout: float = 30.0

    def build(self) -> Reasoner:
        return build_reasoner(
            self.kind, self.model, self.api_key or "", self.base_url, self.vision, self.timeout
        )


class ManifestIOManager(dg.ConfigurableIOManager):
    """Stores each asset's manifest as JSON lines under ``<data_dir>/manifests/<asset>/``,
    readable by people and by the next run; image bytes never pass through here."""

    base_dir: str

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        asset = context.asset_key.path[-1]
        return manifest_path(Path(self.base_dir), asset, context.asset_partition_key)

    def handle_output(self, context: dg.OutputContext, obj: Manifest) -> None:
        path = self._path(context)
        write_manifest(path, obj)
        context.add_output_metadata({"manifest_path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Manifest:
        path = self._path(context)
        manifest = read_manifest_if_exists(path)
        if manifest is None:
            raise FileNotFoundError(
                f"No manifest at {path}: materialize the upstream asset "
                f"{context.asset_key.to_user_string()} for partition "
                f"{context.asset_partition_key} first"
            )
        return manifest


def _secret(name: str) -> dg.EnvVar | None:
    """A secret read at run time (never shown in the UI); None lets boto3 fall back to its
    own credential chain (profiles, instance roles)."""
    return dg.EnvVar(name) if name and os.environ.get(name) else None


def s3_resource_from_env(settings: Settings) -> S3Resource:
    return S3Resource(
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.aws_region or None,
        aws_access_key_id=_secret("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=_secret("AWS_SESSION_TOKEN"),
    )


def resources_from_env(settings: Settings | None = None) -> dict[str, dg.ConfigurableResource]:
    """The default resources, configured from the environment (``.env`` is loaded by
    ``dagster dev``)."""
    settings = settings or Settings.from_env()
    return {
        "source": SourceResource(
            uri=settings.source,
            partition_depth=settings.partition_depth,
            s3=s3_resource_from_env(settings),
            url_expiry_seconds=settings.url_expiry_seconds,
            public_url_template=settings.public_url_template,
        ),
        "storage": StorageResource(
            data_dir=str(settings.data_dir),
            max_side=settings.max_side,
            max_image_pixels=settings.max_image_pixels,
            workers=settings.workers,
        ),
        "captioner": CaptionerResource(
            provider=settings.captioner,
            model=settings.captioner_model,
            base_url=settings.captioner_base_url,
            api_key=_secret(PROVIDER_KEYS.get(settings.captioner, "")),
            concurrency=settings.captioner_concurrency,
            ocr=settings.ocr,
        ),
        "embedder": EmbedderResource(
            provider=settings.embedder,
            model=settings.embedder_model,
            dimension=settings.embedding_dimension,
            region=settings.aws_region,
            endpoint_url=settings.bedrock_endpoint_url,
        ),
        "vector_store": VectorStoreResource(
            kind=settings.vector_store,
            collection=settings.collection,
            path=str(settings.chroma_path or ""),
            url=settings.chroma_url,
            pinecone_api_key=_secret("PINECONE_API_KEY"),
            pinecone_host=settings.pinecone_host,
            pinecone_index_name=settings.pinecone_index_name,
            pinecone_namespace=settings.pinecone_namespace,
            max_delete_share=settings.max_delete_share,
        ),
        "reasoner": ReasonerResource(
            kind=settings.reasoner,
            model=settings.reasoner_model,
            base_url=settings.reasoner_base_url,
            api_key=_secret(PROVIDER_KEYS.get(settings.reasoner, "")),
            vision=settings.reasoner_vision,
            timeout=settings.llm_timeout,
        ),
        "manifest_io_manager": ManifestIOManager(base_dir=str(settings.layout.manifests)),
    }
