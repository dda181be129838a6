"""Writers to an embedded index take turns, whatever starts them; nothing else waits."""

from __future__ import annotations

import threading
import time

import dagster as dg

from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.ingest import materializations
from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.locks import exclusive
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ASSETS, write_library


def test_the_index_step_waits_for_another_writer_of_the_embedded_index(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    write_library(settings.layout.library, {"a/cat.jpg": "chelsea", "a/coffee.jpg": "coffee"})
    job = build_definitions(settings).resolve_job_def("ingest_job")
    instance.add_dynamic_partitions(image_prefixes.name, ["a"])
    outcome: dict = {}

    def ingest() -> None:
        outcome["result"] = job.execute_in_process(partition_key="a", instance=instance)
        outcome["finished"] = time.monotonic()

    with exclusive(settings.layout.index_writer_lock, "the test, as another writer"):
        run = threading.Thread(target=ingest)
        run.start()
        deadline = time.monotonic() + 120
        while not _index_step_started(instance) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _index_step_started(instance), "the run never reached the index step"
        run.join(timeout=2)  # the index step now waits for the lock
        assert run.is_alive(), "the run wrote the index while another writer held it"
        released = time.monotonic()
    run.join(timeout=120)
    result = outcome["result"]
    assert result.success and outcome["finished"] >= released
    (index,) = materializations(result, "vector_index")
    assert index.metadata["indexed"].value == 2
    assert index.metadata["seconds_waiting_for_index"].value > 0
    assert len(result.get_asset_materialization_events()) == len(ASSETS)


def test_a_server_backed_index_takes_no_lock(settings: Settings) -> None:
    from dam_pipeline.defs.resources import build_resources

    served = build_resources(settings.replace(chroma_url="http://127.0.0.1:9"))["storage"]
    with exclusive(settings.layout.index_writer_lock, "the test"), served.index_writer() as held:
        assert held == {"seconds_waited": 0.0}  # did not block on the held lock


def _index_step_started(instance: dg.DagsterInstance) -> bool:
    return any(
        record.event_log_entry.step_key == "vector_index"
        for run in instance.get_runs()
        for record in instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_START
        ).records
    )
