"""Jobs: ingest a partition, register the prefixes that exist, and answer a question."""

from typing import Literal

import dagster as dg
from pydantic import Field

from dam_pipeline.defs.assets import GROUP
from dam_pipeline.defs.metadata import (
    answer_markdown,
    duplicates_markdown,
    hits_table,
    thumbnail_data_uri,
)
from dam_pipeline.defs.resources import (
    CaptionerResource,
    EmbedderResource,
    ReasonerResource,
    SourceResource,
    StorageResource,
    VectorStoreResource,
    open_library,
)
from dam_pipeline.library import EmptyIndexError, QueryError
from dam_pipeline.reasoning import Answer
from dam_pipeline.search_request import (
    DEFAULT_TOP_K,
    DUPLICATE_DISTANCE,
    MAX_DUPLICATE_DISTANCE,
    MAX_TOP_K,
    SearchRequest,
)

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups(GROUP),
    tags={"dam/job": "ingest"},  # dagster.yaml limits how many of these run at once
    description="Materialize the whole image pipeline for one prefix.",
)


@dg.op
def discover_prefixes(context: dg.OpExecutionContext, source: SourceResource) -> list[str]:
    """Register every prefix of the source as a partition of the image assets."""
    from dam_pipeline.defs.instance import register_prefixes

    new, keys = register_prefixes(context.instance, source.open())
    context.log.info("%d prefixes, %d new: %s", len(keys), len(new), ", ".join(new) or "none")
    context.add_output_metadata({"prefixes": len(keys), "new": len(new)})
    return keys


@dg.job(description="Register the source's prefixes as partitions.")
def discover_prefixes_job() -> None:
    discover_prefixes()


class QueryConfig(dg.Config):
    """What to ask; the launchpad checks the choices before a run starts."""

    mode: Literal["ask", "search", "similar", "duplicates"] = Field(
        default="ask",
        description="ask (an answer citing images), search, similar, or duplicates.",
    )
    question: str = Field(
        default="Which photo shows a cat?", description="What to look for, in plain words."
    )
    key: str = Field(default="", description="similar: the key of an indexed image.")
    image_path: str = Field(default="", description="similar: a new image file to compare.")
    retrieval: Literal["default", "dense", "hybrid", "keyword"] = Field(
        default="default", description="default (DAM_SEARCH_MODE), dense, hybrid or keyword."
    )
    top_k: int = Field(
        default=DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="How many images to retrieve."
    )
    prefixes: list[str] = Field(default_factory=list, description="Limit to these prefixes.")
    tags: list[str] = Field(default_factory=list, description="Require all these tags.")
    date_from: str = Field(default="", description="YYYY-MM-DD, on the date taken (else modified).")
    date_to: str = Field(default="", description="YYYY-MM-DD, inclusive.")
    min_score: float | None = Field(
        default=None, description="Drop hits under this similarity (default DAM_MIN_SCORE)."
    )
    max_distance: int = Field(
        default=DUPLICATE_DISTANCE,
        ge=0,
        le=MAX_DUPLICATE_DISTANCE,
        description="duplicates: Hamming bits of 64 (6 ~ similarity 0.9).",
    )
    sort: Literal["relevance", "date"] = Field(
        default="relevance", description="relevance (best first) or date (newest first)."
    )

    def request(self) -> SearchRequest:
        """The job's ``SearchRequest`` (what the CLI, the page and the API build too)."""
        return SearchRequest.of(
            self.question,
            top_k=self.top_k,
            prefixes=self.prefixes,
            tags=self.tags,
            date_from=self.date_from,
            date_to=self.date_to,
            min_score=self.min_score,
            mode=None if self.retrieval == "default" else self.retrieval,
            sort=self.sort,
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
    """Ask, search, find similar images or near-duplicates through the same code as the API
    and the CLI; the result shows as markdown in the run's metadata."""
    library = open_library(source, vector_store, embedder, captioner, reasoner)
    try:
        if config.mode == "duplicates":
            groups = library.duplicates(prefixes=config.prefixes, max_distance=config.max_distance)
            context.add_output_metadata(
                {
                    "groups": len(groups),
                    "duplicates": dg.MetadataValue.md(duplicates_markdown(groups)),
                }
            )
            return {"groups": [group.to_dict() for group in groups]}
        answer = _answer(library, config, context.run_id)
    except (QueryError, EmptyIndexError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    objects = storage.object_store()
    thumbnails = {
        hit.key: thumbnail_data_uri(objects, hit.normalized_hash)
        for hit in answer.sources
        if objects.has(hit.normalized_hash)
    }
    context.add_output_metadata(
        {
            "answer": dg.MetadataValue.md(answer_markdown(answer, thumbnails)),
            "hits": hits_table(answer),
            "dagster/row_count": len(answer.sources),
            "cited": dg.MetadataValue.json([hit.label for hit in answer.cited_hits]),
            "cost_usd": dg.MetadataValue.float(round(answer.cost_usd, 6)),
            "usage": dg.MetadataValue.json(answer.usage),
        }
    )
    return answer.to_dict()


def _answer(library, config: QueryConfig, run_id: str) -> Answer:
    if config.mode == "similar":
        if bool(config.key) == bool(config.image_path):
            raise QueryError("similar needs exactly one of key or image_path.")
        hits = library.similar(
            key=config.key or None,
            image=config.image_path or None,
            top_k=config.top_k,
            prefixes=config.prefixes,
            min_score=config.min_score,
        )
        title = f"Images like {config.key or config.image_path}"
        return Answer(title, f"{len(hits)} similar images.", hits, [], "similar")
    if config.mode == "search":
        hits = library.find(config.request())
        summary = f"{len(hits)} images match." if hits else "No image matches well enough."
        return Answer(config.question, summary, hits, [], "search")
    return library.answer(config.request(), spend_id=run_id)


def checked_query(values: dict) -> dict:
    """Runs at launch, after Dagster checked the values against ``QueryConfig``'s schema (a
    typo in ``mode`` is refused there): a query that cannot be answered as asked is refused
    too, before a run exists, with the reason in the launchpad."""
    config = QueryConfig(**values)
    if config.mode in ("ask", "search"):
        config.request()  # a question, dates that parse: refused here with the reason
    if config.mode == "similar" and bool(config.key) == bool(config.image_path):
        raise QueryError("similar needs exactly one of key or image_path.")
    return {"ops": {"answer_question": {"config": config.model_dump()}}}


@dg.job(
    description="Search the index and answer a question about the images.",
    config=dg.ConfigMapping(config_fn=checked_query, config_schema=QueryConfig.to_config_schema()),
)
def query_job() -> None:
    answer_question()


@dg.op(
    description="Group every face again (names and every manual decision kept).",
    tags={"dam/job": "people"},
)
def regroup_people(context: dg.OpExecutionContext, storage: StorageResource) -> dict:
    from dam_pipeline.faces.grouping import regroup

    done = regroup(storage.state().people)
    context.add_output_metadata({k: dg.MetadataValue.int(v) for k, v in done.items()})
    return done


@dg.job(description="Group every face of the library into people again, from scratch.")
def regroup_people_job() -> None:
    regroup_people()


regroup_people_schedule = dg.ScheduleDefinition(
    name="weekly_regroup_people_schedule",
    job=regroup_people_job,
    cron_schedule="0 4 * * 0",
    description="Sundays at 04:00: faces grouped again from scratch (incremental grouping "
    "between runs depends on the order faces arrived in).",
)
