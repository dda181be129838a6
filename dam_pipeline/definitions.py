"""The one ``Definitions`` object that ``workspace.yaml`` (and ``dg``) loads.

Definitions are built from ``Settings`` when Dagster loads the code location, not when
this module is imported, so tests and tools can build them from settings of their own.
"""

import dagster as dg

from dam_pipeline.defs.assets import build_image_library_assets
from dam_pipeline.defs.checks import image_library_checks
from dam_pipeline.defs.jobs import discover_prefixes_job, ingest_job, query_job
from dam_pipeline.defs.resources import build_resources
from dam_pipeline.defs.schedules import build_resync_schedule
from dam_pipeline.defs.sensors import build_sensors
from dam_pipeline.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster needs, configured by ``settings``."""
    return dg.Definitions(
        assets=build_image_library_assets(settings),
        asset_checks=image_library_checks,
        jobs=[ingest_job, discover_prefixes_job, query_job],
        sensors=build_sensors(settings.sensor_interval_seconds),
        schedules=[build_resync_schedule(settings.resync_cron)],
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location: definitions configured from the environment (and ``.env``)."""
    return build_definitions(Settings.from_env())
