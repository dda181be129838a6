"""A run over many partitions (what a backfill from the asset graph is, with the assets'
single-run backfill policy): each partition is materialized with its own metadata, and a
partition that fails is reported as failed without hiding the others."""

from __future__ import annotations

import sqlite3

import dagster as dg
import pytest

from dam_pipeline import components
from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.instance import register_prefixes
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ASSETS, write_library

RANGE = {
    "dagster/asset_partition_range_start": "p0",
    "dagster/asset_partition_range_end": "p2",
}


def materialized(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict]:
    return {
        m.partition: {k: v.value for k, v in m.metadata.items()}
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
        if m.asset_key.path[-1] == asset
    }


@pytest.mark.slow
def test_one_run_over_three_partitions_and_one_that_fails(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    write_library(
        settings.layout.library,
        {"p0/cat.jpg": "chelsea", "p1/coffee.jpg": "coffee", "p2/rocket.jpg": "rocket"},
    )
    register_prefixes(instance, components.open_source(settings))
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, tags=RANGE)
    assert result.success
    for asset in ASSETS:
        assert set(materialized(result, asset)) == {"p0", "p1", "p2"}, asset
    indexed = materialized(result, "vector_index")
    assert {p: m["indexed"] for p, m in indexed.items()} == {"p0": 1, "p1": 1, "p2": 1}
    assert materialized(result, "captions")["p1"]["seen"] == 1

    # p1's vectors are lost from the cache and the index is emptied: re-indexing p1 fails,
    # p0 and p2 are indexed again and materialized, and the run says which one failed
    state = components.open_state(settings)
    hashes = [r.input_hash for r in state.manifests.read("embeddings", "p1")]
    with sqlite3.connect(settings.layout.cache) as db:
        db.execute(
            f"DELETE FROM vectors WHERE input_hash IN ({','.join('?' * len(hashes))})", hashes
        )
    components.open_vector_store(settings).reset()
    again = job.execute_in_process(
        instance=instance,
        tags=RANGE,
        asset_selection=[dg.AssetKey("vector_index")],
        raise_on_error=False,
    )
    assert not again.success
    assert set(materialized(again, "vector_index")) == {"p0", "p2"}
    failure = next(e for e in again.all_events if e.event_type_value == "STEP_FAILURE")
    assert "1 of 3 partitions failed (p1)" in failure.event_specific_data.error.message
    store = components.open_vector_store(settings)
    assert {len(store.list_partition(p)) for p in ("p0", "p2")} == {1}
    assert store.list_partition("p1") == {}
