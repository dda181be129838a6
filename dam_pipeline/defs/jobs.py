"""Jobs: ingest a partition, register the prefixes that exist, and answer a question."""

import dagster as dg
from pydantic import Field

from dam_pipeline.defs.assets import image_library_assets
from dam_pipeline.defs.metadata import answer_markdown, image_thumbnail
from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.defs.resources import (
    EmbedderResource,
    ReasonerResource,
    SourceResource,
    VectorStoreResource,
)
from dam_pipeline.keys import encode_prefix
from dam_pipeline.retrieval import search
from dam_pipeline.sources import Source

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
    question: str = Field(description="What to look for, in plain words.")
    top_k: int = Field(default=5, description="How many images to retrieve.")
    prefixes: list[str] = Field(default_factory=list, description="Limit to these prefixes.")
    min_score: float = Field(default=0.0, description="Drop hits under this similarity.")


@dg.op
def answer_question(
    context: dg.OpExecutionContext,
    config: QueryConfig,
    source: SourceResource,
    embedder: EmbedderResource,
    vector_store: VectorStoreResource,
    reasoner: ReasonerResource,
) -> dict:
    """Retrieve the closest images, then answer from their captions only, citing them."""
    opened = source.open()
    hits = search(
        config.question,
        embedder.build(),
        vector_store.open(),
        top_k=config.top_k,
        partitions=[encode_prefix(p) for p in config.prefixes] or None,
        min_score=config.min_score,
        url_for=opened.url_for,
    )
    answer = reasoner.build().answer(config.question, hits)
    thumbnails = {hit.key: uri for hit in hits if (uri := image_thumbnail(hit.url))}
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
        "hits": [hit.__dict__ for hit in hits],
    }


@dg.job(description="Search the index and answer a question about the images.")
def query_job() -> None:
    answer_question()
