"""What a materialization shows in the Dagster UI: counts, timings, quarantine, previews."""

from __future__ import annotations

import base64
import io
from typing import Any

import dagster as dg

from dam_pipeline.imaging import ObjectStore
from dam_pipeline.manifests import Manifest
from dam_pipeline.places.gazetteer import place_words
from dam_pipeline.reasoning import Answer
from dam_pipeline.retrieval.similar import DuplicateGroup

PREVIEW_IMAGES = 6
THUMBNAIL_SIDE = 128
QUARANTINE_ROWS = 25


def _value(value: Any) -> dg.MetadataValue | None:
    if isinstance(value, bool):
        return dg.MetadataValue.bool(value)
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    if isinstance(value, str):
        return dg.MetadataValue.text(value)
    if isinstance(value, dict) and value:  # e.g. what was cut short, per video
        return dg.MetadataValue.json(value)
    return None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def thumbnail_data_uri(store: ObjectStore, digest: str) -> str:
    image = store.open_image(digest, min_side=THUMBNAIL_SIDE)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


QUARANTINE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("key", "string", description="the object's key in the source"),
        dg.TableColumn("status", "string", description="quarantined, failed or skipped"),
        dg.TableColumn("reason", "string", description="what is wrong and what to do"),
    ]
)
HITS_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("source", "string", description="S1, S2 … as the answer cites them"),
        dg.TableColumn("key", "string"),
        dg.TableColumn(
            "relevance", "float", description="relevance to the question, in result order"
        ),
        dg.TableColumn(
            "moment", "string", description="the key, or the video and the shot's times"
        ),
        dg.TableColumn("partition", "string"),
        dg.TableColumn("caption", "string"),
        dg.TableColumn("people", "string", description="the named people in the image"),
        dg.TableColumn("place", "string", description="where it was taken"),
        dg.TableColumn("url", "string"),
    ]
)


def stage_metadata(manifest: Manifest) -> dict[str, dg.MetadataValue]:
    """The stage's summary as typed metadata, the number of objects it holds as
    ``dagster/row_count``, and a table of what was not processed and why."""
    metadata = {
        name: converted
        for name, value in manifest.summary.items()
        if (converted := _value(value)) is not None
    }
    metadata["dagster/row_count"] = dg.MetadataValue.int(len(manifest.ok()))
    not_indexed = manifest.not_ok()
    if not_indexed:
        rows = [
            dg.TableRecord({"key": r.key, "status": r.status, "reason": r.reason or "unknown"})
            for r in not_indexed[:QUARANTINE_ROWS]
        ]
        if len(not_indexed) > QUARANTINE_ROWS:
            more = len(not_indexed) - QUARANTINE_ROWS
            rows.append(
                dg.TableRecord({"key": "…", "status": "", "reason": f"and {more} more (manifest)"})
            )
        metadata["quarantine"] = dg.MetadataValue.table(rows, schema=QUARANTINE_SCHEMA)
    return metadata


def hits_table(answer: Answer) -> dg.MetadataValue:
    """The retrieved images as a typed table (the answer's markdown shows them with thumbnails)."""
    return dg.MetadataValue.table(
        [
            dg.TableRecord(
                {
                    "source": f"S{number}",
                    "key": hit.key,
                    "relevance": float(hit.relevance),
                    "moment": hit.label,
                    "partition": hit.partition,
                    "caption": hit.caption,
                    "people": ", ".join(hit.people),
                    "place": place_words(hit.place),
                    "url": hit.url,
                }
            )
            for number, hit in enumerate(answer.sources, start=1)
        ],
        schema=HITS_SCHEMA,
    )


def caption_preview(manifest: Manifest, store: ObjectStore) -> dg.MetadataValue:
    """A few thumbnails with their captions."""
    lines = ["| image | key | caption |", "|---|---|---|"]
    for record in manifest.ok()[:PREVIEW_IMAGES]:
        uri = thumbnail_data_uri(store, record.normalized_hash)
        lines.append(
            f"| ![{_cell(record.key)}]({uri}) | {_cell(record.key)} | {_cell(record.caption)} |"
        )
    return dg.MetadataValue.md("\n".join(lines))


def duplicates_markdown(groups: list[DuplicateGroup]) -> str:
    if not groups:
        return "No near-duplicates found."
    lines = ["| group | similarity | images |", "|---|---|---|"]
    for number, group in enumerate(groups, start=1):
        keys = "<br>".join(_cell(key) for key in group.keys)
        lines.append(f"| {number} | ≥ {group.similarity:.2f} | {keys} |")
    return "\n".join(lines)


def answer_markdown(answer: Answer, thumbnails: dict[str, str] | None = None) -> str:
    """The answer with its citations, then the table of hits (key, score, caption, URL)."""
    thumbnails = thumbnails or {}
    lines = [
        f"**Question:** {answer.question}",
        "",
        answer.text,
        "",
        "| # | image | key | score | caption | url |",
        "|---|---|---|---|---|---|",
    ]
    for number, hit in enumerate(answer.sources, start=1):
        image = f"![{_cell(hit.key)}]({thumbnails[hit.key]})" if hit.key in thumbnails else ""
        cells = [f"S{number}", image, _cell(hit.key), f"{hit.score:.3f}", _cell(hit.caption)]
        lines.append(f"| {' | '.join(cells)} | {_cell(hit.url)} |")
    return "\n".join(lines)
