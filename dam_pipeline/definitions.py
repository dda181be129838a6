"""The one ``Definitions`` object that ``workspace.yaml`` loads."""

import dagster as dg

from dam_pipeline.defs.assets import image_library_assets
from dam_pipeline.defs.checks import image_library_checks
from dam_pipeline.defs.jobs import discover_prefixes_job, ingest_job, query_job
from dam_pipeline.defs.resources import resources_from_env
from dam_pipeline.defs.schedules import nightly_resync_schedule
from dam_pipeline.defs.sensors import prefix_discovery_sensor, upload_sensor
from dam_pipeline.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Everything Dagster needs, with resources configured from ``settings`` (default: the
    environment)."""
    return dg.Definitions(
        assets=image_library_assets,
        asset_checks=image_library_checks,
        jobs=[ingest_job, discover_prefixes_job, query_job],
        sensors=[prefix_discovery_sensor, upload_sensor],
        schedules=[nightly_resync_schedule],
        resources=resources_from_env(settings),
    )


defs = build_definitions()
