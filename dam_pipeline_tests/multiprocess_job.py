"""A reconstructable ingest job on Dagster's multiprocess executor (each step in its own
process, which rebuilds the definitions from the environment): the proof that the steps
share state only through the data directory, the index server and the bucket."""

import dagster as dg


def ingest_job() -> dg.JobDefinition:
    from dam_pipeline.definitions import build_definitions
    from dam_pipeline.defs.assets import GROUP
    from dam_pipeline.defs.partitions import image_prefixes
    from dam_pipeline.settings import Settings

    defs = build_definitions(Settings.from_env())
    job = dg.define_asset_job(
        "ingest_job_multiprocess",
        selection=dg.AssetSelection.groups(GROUP).without_checks(),
        partitions_def=image_prefixes,
        executor_def=dg.multiprocess_executor,
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(job.name)
