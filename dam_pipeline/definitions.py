"""The one ``Definitions`` object that ``workspace.yaml`` (and ``dg``) loads.

Definitions are built from ``Settings`` when Dagster loads the code location, not when
this module is imported, so tests and tools can build them from settings of their own.

Every path that starts work (the asset graph, backfills, `dagster asset materialize`,
sensors, schedules, the jobs) runs its steps in the run's own process (the in-process
executor is the location's default): a step process would import the models again for a
few seconds of work. The step writing the vector index is in a pool whose limit
``dam init-home`` writes, so no path starts more index writers than the store allows.
"""

import dagster as dg

from dam_pipeline.defs.assets import build_image_library_assets
from dam_pipeline.defs.jobs import (
    discover_prefixes_job,
    ingest_job,
    query_job,
    regroup_people_job,
    regroup_people_schedule,
)
from dam_pipeline.defs.resources import build_resources
from dam_pipeline.defs.run_monitoring import build_pool_sensor, dead_run_worker_sensor
from dam_pipeline.defs.schedules import build_resync_schedule
from dam_pipeline.defs.sensors import build_sensors
from dam_pipeline.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster needs, configured by ``settings``."""
    return dg.Definitions(
        assets=build_image_library_assets(settings),
        jobs=[
            ingest_job,
            discover_prefixes_job,
            query_job,
            *([regroup_people_job] if settings.faces else []),
        ],
        sensors=[
            *build_sensors(
                settings.sensor_interval_seconds,
                event_queue=bool(settings.event_queue_url),
                reconcile_seconds=settings.reconcile_interval_seconds,
            ),
            dead_run_worker_sensor,
            build_pool_sensor(settings),
        ],
        schedules=[
            build_resync_schedule(settings.resync_cron),
            *([regroup_people_schedule] if settings.faces else []),
        ],
        resources=build_resources(settings),
        executor=dg.in_process_executor,
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location: definitions configured from the environment (and ``.env``)."""
    return build_definitions(Settings.from_env())
