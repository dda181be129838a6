"""Jobs: ingest a partition, register the prefixes that exist, and answer a question."""

from datetime import date
from pathlib import Path

import dagster as dg
from pydantic import Field

from dam_pipeline.defs.assets import image_library_assets
from dam_pipeline.defs.metadata import answer_markdown, duplicates_markdown, thumbnail_data_uri
from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.defs.resources import (
    CaptionerResource,
    EmbedderResource,
    ReasonerResource,
    SourceResource,
    StorageResource,
    VectorStoreResource,
)
from dam_pipeline.keys import encode_prefix, vector_id
from dam_pipeline.reasoning import Answer
from dam_pipeline.retrieval import Filters, search
from dam_pipeline.retrieval.similar import (
    duplicates_in,
    similar_to_indexed,
    similar_to_vector,
    vector_for_image,
)
from dam_pipeline.sources import Source
from dam_pipeline.sources.base import partition_of

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.assets(*image_library_assets),
    partitions_def=image_prefixes,
    description="Materialize the whole image pipeline for one prefix.",
)


def register_prefixes(instance: dg.DagsterInstance, source: Source) -> tuple[list[str], list[str]]:
    """Add a partition for every prefix the source holds; returns (new keys, all keys)."""
    keys = [encode_prefix(prefix) for prefix in source.list_prefixes()]
    existing = set(instance.get_dynamic_partitions(image_prefixes.name))
    new = [key for key in keys if key not in existing]
    if new:
        instance.add_dynamic_partitions(image_prefixes.name, new)
    return new, keys


@dg.op
def discover_prefixes(context: dg.OpExecutionContext, source: SourceResource) -> list[str]:
    """Register every prefix of the source as a partition of the image assets."""
    new, keys = register_prefixes(context.instance, source.open())
    context.log.info("%d prefixes, %d new: %s", len(keys), len(new), ", ".join(new) or "none")
    context.add_output_metadata({"prefixes": len(keys), "new": len(new)})
    return keys


@dg.job(description="Register the source's prefixes as partitions.")
def discover_prefixes_job() -> None:
    discover_prefixes()


class QueryConfig(dg.Config):
    mode: str = Field(
        default="ask",
        description="ask (an answer citing images), search, similar, or duplicates.",
    )
    question: str = Field(default="", description="What to look for, in plain words.")
    key: str = Field(default="", description="similar: the key of an indexed image.")
    image_path: str = Field(default="", description="similar: a new image file to compare.")
    retrieval: str = Field(default="dense", description="dense, hybrid or keyword.")
    top_k: int = Field(default=5, description="How many images to retrieve.")
    prefixes: list[str] = Field(default_factory=list, description="Limit to these prefixes.")
    tags: list[str] = Field(default_factory=list, description="Require all these tags.")
    date_from: str = Field(default="", description="YYYY-MM-DD, on the date taken (else modified).")
    date_to: str = Field(default="", description="YYYY-MM-DD, inclusive.")
    min_score: float = Field(default=0.0, description="Drop hits under this similarity.")
    max_distance: int = Field(default=6, description="duplicates: Hamming bits of 64 (6 ~ 0.9).")

    def filters(self) -> Filters:
        return Filters(
            prefixes=tuple(self.prefixes),
            date_from=date.fromisoformat(self.date_from) if self.date_from else None,
            date_to=date.fromisoformat(self.date_to) if self.date_to else None,
            tags=tuple(self.tags),
            min_score=self.min_score,
        )


@dg.op
def answer_question(
    context: dg.OpExecutionContext,
    config: QueryConfig,
    source: SourceResource,
    storage: StorageResource,
    captioner: CaptionerResource,
    embedder: EmbedderResource,
    vector_store: VectorStoreResource,
    reasoner: ReasonerResource,
) -> dict:
    """Search, ask (search, then answer from the captions only, citing them) or find
    similar images; the result shows as markdown in the run's metadata."""
    if config.mode not in ("ask", "search", "similar", "duplicates"):
        raise dg.Failure(f"mode must be ask, search, similar or duplicates, not {config.mode!r}")
    opened, store = source.open(), vector_store.open()
    if config.mode == "duplicates":
        partitions = [encode_prefix(p) for p in config.prefixes]
        groups = duplicates_in(
            store, partitions or storage.keyword_index().partitions(), config.max_distance
        )
        context.add_output_metadata(
            {"groups": len(groups), "duplicates": dg.MetadataValue.md(duplicates_markdown(groups))}
        )
        return {"groups": [{"keys": g.keys, "similarity": g.similarity} for g in groups]}
    if config.mode == "similar":
        hits = _similar(config, opened, store, storage, captioner, embedder)
        title = f"Images like {config.key or config.image_path}"
        answer = Answer(title, f"{len(hits)} similar images.", hits, [], "similar")
    else:
        if not config.question.strip():
            raise dg.Failure("The question is empty: set ops.answer_question.config.question")
        hits = search(
            config.question,
            embedder.build(),
            store,
            top_k=config.top_k,
            filters=config.filters(),
            mode=config.retrieval,
            keywords=storage.keyword_index(),
            url_for=opened.url_for,
        )
        if config.mode == "search":
            summary = f"{len(hits)} images match." if hits else "No image matches well enough."
            answer = Answer(config.question, summary, hits, [], "search")
        else:
            answer = reasoner.build().answer(config.question, hits)
    objects = storage.object_store()
    thumbnails = {
        hit.key: thumbnail_data_uri(objects, hit.normalized_hash)
        for hit in hits
        if objects.has(hit.normalized_hash)
    }
    context.add_output_metadata(
        {
            "answer": dg.MetadataValue.md(answer_markdown(answer, thumbnails)),
            "hits": len(hits),
            "cited": dg.MetadataValue.json([answer.sources[n - 1].key for n in answer.cited]),
        }
    )
    return {
        "question": answer.question,
        "answer": answer.text,
        "cited": answer.cited,
        "error": answer.error,
        "hits": [hit.__dict__ for hit in hits],
    }


def _similar(config, source, store, storage, captioner, embedder) -> list:
    if bool(config.key) == bool(config.image_path):
        raise dg.Failure("similar needs exactly one of key or image_path")
    if config.key:
        partition = encode_prefix(partition_of(config.key, source.depth))
        return similar_to_indexed(
            vector_id(source.source_id, config.key),
            partition,
            store,
            config.top_k,
            config.filters(),
            source.url_for,
        )
    data = Path(config.image_path).expanduser().read_bytes()
    vector = vector_for_image(data, storage.max_side, captioner.build(), embedder.build())
    return similar_to_vector(vector, store, config.top_k, config.filters(), url_for=source.url_for)


@dg.job(description="Search the index and answer a question about the images.")
def query_job() -> None:
    answer_question()
