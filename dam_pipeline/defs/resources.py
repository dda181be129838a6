"""Resources: one per domain interface, each built from the one ``Settings``.

A resource holds the settings (read once, when the definitions are built) and, where a
provider needs one, its secret as a ``dg.EnvVar`` resolved at run time and never shown in
the UI. Which provider is used is decided by ``Settings``, never inside an asset.
(No ``from __future__ import annotations`` here: Dagster reads the field annotations.)
"""

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from dam_pipeline import components
from dam_pipeline.cache import ContentCache
from dam_pipeline.captioning import Captioner
from dam_pipeline.costs import spend_rows, usages_from_json
from dam_pipeline.embedding import Embedder
from dam_pipeline.embedding.visual import VisualEmbedder
from dam_pipeline.faces.describe import FaceDescriber
from dam_pipeline.imaging import ObjectStore
from dam_pipeline.library import Library
from dam_pipeline.locks import exclusive
from dam_pipeline.manifests import Manifest
from dam_pipeline.reasoning import Reasoner
from dam_pipeline.retrieval import KeywordIndex
from dam_pipeline.settings import PROVIDER_KEY_VARIABLES, DataLayout, Settings
from dam_pipeline.sources import Source
from dam_pipeline.sources.events import BucketEventQueue
from dam_pipeline.state import PipelineState
from dam_pipeline.vector_stores import VectorStore


class S3Resource(dg.ConfigurableResource):
    """An S3 (or S3-compatible) client, credentials as ``dg.EnvVar`` or boto3's own chain.
    Ours rather than dagster-aws's: importing dagster-aws cost every run 1.3 s of start-up
    for the same boto3 client."""

    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    _client: Any = PrivateAttr(default=None)

    def get_client(self) -> Any:
        """One client per resource instance (a run, a sensor tick), made on first use."""
        if self._client is None:
            from dam_pipeline.sources import s3_client_from_env

            self._client = s3_client_from_env(
                self.endpoint_url,
                self.region_name,
                self.aws_access_key_id,
                self.aws_secret_access_key,
                self.aws_session_token,
            )
        return self._client


class SourceResource(dg.ConfigurableResource):
    """Where the images live: a folder, or ``s3://bucket[/root]`` reached through the
    S3 resource (AWS S3, MinIO, Supabase Storage, R2: only the endpoint differs)."""

    settings: dg.ResourceDependency[Settings]
    s3: S3Resource

    def open(self) -> Source:
        uses_s3 = self.settings.source.startswith("s3://")
        return components.open_source(
            self.settings, s3_client=self.s3.get_client() if uses_s3 else None
        )

    def event_queue(self) -> BucketEventQueue | None:
        """The bucket's event queue (``DAM_EVENT_QUEUE_URL``), if one is configured."""
        return components.open_event_queue(self.settings, self.open())


class StorageResource(dg.ConfigurableResource):
    """The pipeline's state: normalized images, manifests, the model-output cache and the
    keyword index, in the data directory or (shared profile) in Postgres and S3."""

    settings: dg.ResourceDependency[Settings]
    s3: S3Resource
    _state: PipelineState | None = PrivateAttr(default=None)

    @property
    def layout(self) -> DataLayout:
        return self.settings.layout

    def state(self) -> PipelineState:
        """One per resource instance (a run, a sensor tick): each store opens on first use,
        the S3 client of the object store only if it is used, and then once."""
        if self._state is None:
            self._state = components.open_state(self.settings, s3_client=self.s3.get_client)
        return self._state

    def object_store(self) -> ObjectStore:
        return self.state().objects

    def cache(self) -> ContentCache:
        return self.state().cache

    def keyword_index(self) -> KeywordIndex:
        return self.state().keyword_index()

    def index_writer(self) -> AbstractContextManager[dict]:
        """Held while writing the index: exclusive for an embedded Chroma folder (every
        writer takes it, whether a daemon run or `dam ingest`), free for a server."""
        if self.settings.embedded_index:
            return exclusive(self.layout.index_writer_lock, "the embedded index")
        return nullcontext({"seconds_waited": 0.0})

    def record_spend(self, run_id: str, partition_key: str, stage: str, manifest: Manifest) -> None:
        """Put a stage's paid usage (its summary's ``usage``) in the spend ledger."""
        usage = manifest.summary.get("usage") or {}
        if usage:
            rows = spend_rows(
                usages_from_json(usage),
                components.price_table(self.settings),
                run_id,
                partition_key,
                stage,
            )
            self.state().spend.record(rows)

    def cost_each(self, component: Any, stage: str) -> float | None:
        """What one result of this paid component cost on average so far (the spend
        ledger), to price what the cache saves; None for local models or before any."""
        model_id = getattr(component, "model_id", "")
        if not model_id:
            return None
        rows = [r for r in self.state().spend.rows() if r.stage == stage and r.model_id == model_id]
        images = sum(r.usage.images or r.usage.requests for r in rows)
        return sum(r.cost_usd for r in rows) / images if images else None

    def previous_manifest(self, asset: str, partition_key: str) -> Manifest | None:
        """What this asset wrote for the partition last time: the basis of incremental runs."""
        return self.state().manifests.read(asset, partition_key)


class CaptionerResource(dg.ConfigurableResource):
    """``DAM_CAPTIONER``: local (offline classifier + OCR), groq (Llama-4-Scout) or openai
    (any OpenAI-compatible vision endpoint)."""

    settings: dg.ResourceDependency[Settings]
    api_key: str | None = None

    def build(self) -> Captioner:
        return components.build_captioner(self.settings, api_key=self.api_key)


class EmbedderResource(dg.ConfigurableResource):
    """``DAM_EMBEDDER``: sentence-transformers (captions) or bedrock-titan (the images)."""

    settings: dg.ResourceDependency[Settings]

    def build(self) -> Embedder:
        return components.build_embedder(self.settings)

    def build_visual(self) -> VisualEmbedder | None:
        return components.build_visual_embedder(self.settings)


class VectorStoreResource(dg.ConfigurableResource):
    """``DAM_VECTOR_STORE``: chroma (an embedded folder, or a server) or pinecone."""

    settings: dg.ResourceDependency[Settings]
    pinecone_api_key: str | None = None

    def open(self) -> VectorStore:
        return components.open_vector_store(self.settings, pinecone_api_key=self.pinecone_api_key)

    def open_visual(self) -> VectorStore | None:
        """The visual vectors' index (``DAM_VISUAL_INDEX``), or None."""
        return components.open_visual_index(self.settings, self.pinecone_api_key)


class FacesResource(dg.ConfigurableResource):
    """``DAM_FACES``: the face models, and where face descriptors are searched."""

    settings: dg.ResourceDependency[Settings]
    pinecone_api_key: str | None = None

    def build(self) -> FaceDescriber | None:
        return components.build_face_describer(self.settings)

    def open_index(self) -> VectorStore | None:
        return components.open_face_index(self.settings, self.pinecone_api_key)


class ReasonerResource(dg.ConfigurableResource):
    """``DAM_REASONER``: extractive (offline), groq (Llama-3.3) or openai (any compatible)."""

    settings: dg.ResourceDependency[Settings]
    api_key: str | None = None

    def build(self) -> Reasoner:
        return components.build_reasoner(self.settings, api_key=self.api_key)


def open_library(
    source: SourceResource,
    vector_store: VectorStoreResource,
    embedder: EmbedderResource,
    captioner: CaptionerResource,
    reasoner: ReasonerResource,
) -> Library:
    """The library as the query job sees it: the same code as the API, with the components
    (and secrets) of this run's resources."""
    return Library(
        source.settings,
        source=source.open(),
        index=vector_store.open(),
        visual_index=vector_store.open_visual(),
        embedder=embedder.build(),
        captioner=captioner.build(),
        reasoner=reasoner.build(),
    )


class ManifestIOManager(dg.ConfigurableIOManager):
    """Passes manifests between assets through the manifest store: JSON lines under
    ``<data_dir>/manifests/<asset>/`` (readable by people), or Postgres in the shared profile;
    image bytes never pass through here. A step hands over ``{partition key: manifest}`` for
    the partitions of its run that it finished; a partition it left out (it failed) keeps
    its previous manifest and is left out of the next step too."""

    storage: dg.ResourceDependency[StorageResource]
    _left_out: set[tuple[str, str]] = PrivateAttr(default_factory=set)

    def handle_output(self, context: dg.OutputContext, obj: dict[str, Manifest]) -> None:
        asset = context.asset_key.path[-1]
        manifests = self.storage.state().manifests
        for key in context.asset_partition_keys:
            if key in obj:
                manifests.write(asset, key, obj[key])
            else:
                self._left_out.add((asset, key))
        context.add_output_metadata({"partitions": len(obj)})

    def load_input(self, context: dg.InputContext) -> dict[str, Manifest]:
        asset = context.asset_key.path[-1]
        manifests = self.storage.state().manifests
        loaded = {}
        for key in context.asset_partition_keys:
            if (asset, key) in self._left_out:
                continue
            manifest = manifests.read(asset, key)
            if manifest is None:
                raise FileNotFoundError(
                    f"No {asset} manifest for partition {key}: materialize "
                    f"{context.asset_key.to_user_string()} for it first"
                )
            loaded[key] = manifest
        return loaded


def _secret(settings: Settings, variable: str) -> str | None:
    """A configured secret: as ``dg.EnvVar`` when it came from the environment (read again
    at run time, never shown in the UI), as given otherwise, None when unset (boto3 then
    uses its own chain: profiles, instance roles)."""
    if settings.secret_is_from_environment(variable):
        return dg.EnvVar(variable)
    return settings.secret(variable) or None


def build_resources(settings: Settings) -> dict[str, object]:
    """Every resource the definitions need, from one ``Settings``."""

    def provider_key(provider: str) -> dg.EnvVar | None:
        variable = PROVIDER_KEY_VARIABLES.get(provider)
        return _secret(settings, variable) if variable else None

    s3 = S3Resource(
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.aws_region or None,
        aws_access_key_id=_secret(settings, "AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=_secret(settings, "AWS_SECRET_ACCESS_KEY"),
        aws_session_token=_secret(settings, "AWS_SESSION_TOKEN"),
    )
    storage = StorageResource(settings=settings, s3=s3)
    return {
        "source": SourceResource(settings=settings, s3=s3),
        "storage": storage,
        "captioner": CaptionerResource(settings=settings, api_key=provider_key(settings.captioner)),
        "embedder": EmbedderResource(settings=settings),
        "vector_store": VectorStoreResource(
            settings=settings, pinecone_api_key=_secret(settings, "PINECONE_API_KEY")
        ),
        "faces": FacesResource(
            settings=settings, pinecone_api_key=_secret(settings, "PINECONE_API_KEY")
        ),
        "reasoner": ReasonerResource(settings=settings, api_key=provider_key(settings.reasoner)),
        "manifest_io_manager": ManifestIOManager(storage=storage),
    }
