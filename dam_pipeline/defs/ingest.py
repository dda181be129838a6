"""`dam ingest` as Dagster runs: every prefix registered as a partition, then ``ingest_job``
executed in this process for each (models loaded once for all), recorded in the instance
like any run so the UI shows them."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg

from dam_pipeline import components
from dam_pipeline.defs.instance import open_instance, register_prefixes
from dam_pipeline.keys import decode_prefix, encode_prefix
from dam_pipeline.library import QueryError
from dam_pipeline.settings import Settings

QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
"""Runs still record every event for the UI; the terminal shows only warnings."""
HOST_TAG = "dam/host"
"""The machine a run executes on, for runs that do not go through the launcher."""


@dataclass(frozen=True)
class PartitionOutcome:
    prefix: str
    status: str
    """ok | partial (some images failed, or a deletion was refused) | FAILED"""
    counts: str
    seconds: float
    run_id: str


def partitions_to_ingest(settings: Settings, prefixes: list[str] | None) -> list[str]:
    """Register the source's prefixes; the partition keys to ingest (all, or those asked:
    an unknown prefix is a ``QueryError`` naming the known ones)."""
    _, keys = register_prefixes(open_instance(settings), components.open_source(settings))
    if not prefixes:
        return keys
    wanted = [encode_prefix(p) for p in prefixes]
    unknown = [p for p, key in zip(prefixes, wanted, strict=True) if key not in keys]
    if unknown:
        known = ", ".join(repr(decode_prefix(k)) for k in keys) or "none"
        raise QueryError(f"unknown prefix {unknown[0]!r}; the source has {known}.")
    return wanted


def ingest(
    settings: Settings, keys: list[str], before: Callable[[int, str], None] | None = None
) -> Iterator[PartitionOutcome]:
    """Run ``ingest_job`` for each partition key in this process, one run each."""
    from dam_pipeline.definitions import build_definitions

    instance = open_instance(settings)
    job = build_definitions(settings).resolve_job_def("ingest_job")
    for number, key in enumerate(keys, start=1):
        if before is not None:
            before(number, key)
        started = time.perf_counter()
        result = job.execute_in_process(
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            run_config=QUIET_CONSOLE,
            tags={HOST_TAG: socket.gethostname()},
        )
        status, counts = partition_outcome(result)
        yield PartitionOutcome(
            decode_prefix(key), status, counts, time.perf_counter() - started, result.run_id
        )


def materializations(
    result: dg.ExecuteInProcessResult, asset: str
) -> list[dg.AssetMaterialization]:
    """The run's materializations of one asset (by asset, not step: normalized_images and
    captions share a step)."""
    return [
        event.materialization
        for event in result.get_asset_materialization_events()
        if event.asset_key == dg.AssetKey(asset)
    ]


def partition_outcome(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    """(ok | partial | FAILED, the counts a person checks) of one ingest run. ``partial``:
    the run finished but some images failed or were deferred (the budget), or a deletion
    was refused."""
    if not result.success:
        for event in result.get_step_failure_events():
            failure = event.step_failure_data
            described = failure.user_failure_data and failure.user_failure_data.description
            if described:  # a dg.Failure says what to fix in one line
                return "FAILED", described
        return "FAILED", "see the run in the Dagster UI (make dev) for the error"
    meta = {}
    for materialization in materializations(result, "vector_index"):
        meta = {name: value.value for name, value in materialization.metadata.items()}
    names = ("indexed", "quarantined", "failed", "upserted", "deleted")
    counts = ", ".join(f"{name} {meta[name]}" for name in names if name in meta)
    if meta.get("deferred"):
        counts += f", deferred {meta['deferred']} (budget)"
    spent = sum(
        float(m.metadata["cost_usd"].value)
        for asset in ("captions", "embeddings")
        for m in materializations(result, asset)
        if "cost_usd" in m.metadata
    )
    if spent:
        counts += f", spent ${spent:.4f}"
    for m in materializations(result, "captions"):
        for name in ("failed_by_reason", "deferred_by_reason"):
            if name in m.metadata and m.metadata[name].value:
                reasons = ", ".join(f"{k} {v}" for k, v in m.metadata[name].value.items())
                counts += f" ({name.split('_')[0]}: {reasons})"
    partial = meta.get("failed", 0) or meta.get("deferred", 0) or meta.get("deletion_blocked")
    if meta.get("deletion_blocked"):
        counts += f", deletion_blocked ({meta.get('would_delete', 0)} would vanish)"
    return ("partial" if partial else "ok"), counts
