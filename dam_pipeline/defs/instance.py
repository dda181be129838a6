"""The Dagster instance `dam` and `make dev` share: its folder, its ``dagster.yaml``, and
the prefixes registered as partitions. All Dagster administration lives here (the CLI
only calls it)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import dagster as dg

from dam_pipeline.defs.assets import INDEX_WRITER_POOL
from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.keys import encode_prefix
from dam_pipeline.settings import Settings
from dam_pipeline.sources import Source

log = logging.getLogger("dam_pipeline")

HEADER = "# Written by `dam init-home`."
SERVER_STORE_WRITERS = 4
"""Index writers at once when the store is a server (Chroma server, pgvector, Pinecone)."""

TEMPLATE = (
    HEADER
    + """
telemetry:
  enabled: false
concurrency:
  # Queries and re-syncs never wait behind ingestion: runs go side by side, at most two
  # ingest_job runs at once (each decodes and captions with all cores). A backfill of
  # many partitions is one run (the assets' backfill policy).
  runs:
    max_concurrent_runs: 10
    tag_concurrency_limits:
      - key: dam/job
        value: ingest
        limit: 2
  # Every step runs in its run's process; the step that writes the vector index is in the
  # pool {pool}: {limit} writer(s) at once, whatever started the run (the asset graph, a
  # backfill, a sensor, a schedule, ingest_job, `dam ingest`). An embedded Chroma folder
  # takes one; a Chroma server, pgvector or Pinecone take more.
  pools:
    granularity: op
    default_limit: {limit}
# The daemon looks at the queue every second (Dagster's default is 5) and starts runs from
# threads, so a run launched from the UI starts about as soon as its process is up.
run_queue:
  dequeue_interval_seconds: 1
  dequeue_use_threads: true
# A backfill submits its runs from several threads.
backfills:
  use_threads: true
  num_submit_workers: 4
# A run's pool slot is given back a few seconds after it ends, whatever ended it (a run
# whose worker died is failed by the code location's dead_run_worker_sensor).
run_monitoring:
  enabled: true
  poll_interval_seconds: 5
  max_resume_run_attempts: 0
  free_slots_after_run_end_seconds: 5
"""
)

POSTGRES_STORAGE = """# Runs, event logs and schedules in Postgres: every machine of a deployment
# sees the same runs and queue (README: "Scaling out").
storage:
  postgres:
    postgres_url: {url}
"""


def index_writers(settings: Settings) -> int:
    """How many index writers the store takes at once: the pool's limit."""
    return 1 if settings.embedded_index else SERVER_STORE_WRITERS


def dagster_yaml(settings: Settings, postgres_url: str = "") -> str:
    """The instance configuration `dam init-home` writes: SQLite in DAGSTER_HOME, or with
    ``--postgres URL`` (or ``DAGSTER_PG_URL``) Postgres. dagster-postgres speaks psycopg2,
    while SQLAlchemy now reads a bare ``postgresql://`` as psycopg 3: the driver is named."""
    text = TEMPLATE.format(pool=INDEX_WRITER_POOL, limit=index_writers(settings))
    url = postgres_url or settings.dagster_pg_url.get_secret_value()
    if not url:
        return text
    scheme, _, rest = url.partition("://")
    url = f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url
    return text + POSTGRES_STORAGE.format(url=json.dumps(url))


def ensure_dagster_home(settings: Settings, postgres_url: str = "") -> Path:
    """The instance folder (``DAGSTER_HOME``, else in the data directory), so that `dam`,
    `make dev` and the daemon all use the same instance."""
    home = Path(settings.dagster_home or settings.layout.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    wanted = dagster_yaml(settings, postgres_url)
    if not config.exists():
        config.write_text(wanted)
        config.chmod(0o600)  # it may hold the database URL
    else:
        current = config.read_text(errors="replace")
        # a Postgres URL given once with --postgres stays until another is given
        keeps_postgres = "postgres_url:" in current and "postgres_url:" not in wanted
        if current.startswith(HEADER) and current != wanted and not keeps_postgres:
            # ours, from an older version (e.g. a custom launcher, no pool): upgrade it and
            # keep the old one beside it; a dagster.yaml the user wrote is left alone
            config.with_name("dagster.yaml.previous").write_text(current)
            config.write_text(wanted)
            config.chmod(0o600)
            log.info("Updated %s (the previous one is dagster.yaml.previous)", config)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return home


def open_instance(settings: Settings) -> dg.DagsterInstance:
    instance = dg.DagsterInstance.from_config(str(ensure_dagster_home(settings)))
    ensure_pool_limit(instance, settings)
    return instance


def ensure_pool_limit(instance: dg.DagsterInstance, settings: Settings) -> bool:
    """Give the index writers' pool its limit before runs claim slots, as `dagster instance
    concurrency set` does; True if it was set now. Left to the first claims, runs starting
    together on a Postgres instance race to create the limit and one of them fails (a
    unique violation inside Dagster's own transaction). `dam` commands do this when they
    open the instance, the code location's pool sensor when the daemon starts."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    wanted = index_writers(settings)
    for attempt in range(4):
        known = INDEX_WRITER_POOL in storage.get_concurrency_keys()
        if known and storage.get_concurrency_info(INDEX_WRITER_POOL).slot_count == wanted:
            return False
        try:
            storage.set_concurrency_slots(INDEX_WRITER_POOL, wanted)
            return True
        except Exception:
            # several machines opening the instance at once: another one set it meanwhile
            # (a unique violation); look again
            if attempt == 3:
                raise
            time.sleep(0.1 * (attempt + 1))
    return False


def register_prefixes(instance: dg.DagsterInstance, source: Source) -> tuple[list[str], list[str]]:
    """Add a partition for every prefix the source holds; returns (new keys, all keys)."""
    from sqlalchemy.exc import IntegrityError

    keys = [encode_prefix(prefix) for prefix in source.list_prefixes()]
    for attempt in range(3):
        existing = set(instance.get_dynamic_partitions(image_prefixes.name))
        new = [key for key in keys if key not in existing]
        try:
            if new:
                instance.add_dynamic_partitions(image_prefixes.name, new)
            break
        except IntegrityError:
            # another machine registered some of them at the same moment: look again
            if attempt == 2:
                raise
    return new, keys


def forget_partition(instance: dg.DagsterInstance, prefix: str) -> bool:
    """Remove a forgotten prefix's partition; True if it was registered."""
    key = encode_prefix(prefix)
    if key not in instance.get_dynamic_partitions(image_prefixes.name):
        return False
    instance.delete_dynamic_partition(image_prefixes.name, key)
    return True
