"""A reconstructable handle on ingest_job for Dagster's multiprocess executor: each step
runs in its own process, which rebuilds the definitions from the environment."""

import dagster as dg


def ingest_job() -> dg.JobDefinition:
    from dam_pipeline.definitions import build_definitions

    return build_definitions().resolve_job_def("ingest_job")
