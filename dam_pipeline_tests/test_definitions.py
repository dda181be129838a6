"""The Dagster layer: one Definitions built from Settings, a domain that never imports
Dagster, and a code location that loads lazily under its own name."""

import ast
import itertools
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

import dam_pipeline
from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.assets import ASSET_NAMES
from dam_pipeline.defs.partitions import image_prefixes
from dam_pipeline.settings import Settings

ASSETS = ["raw_images", "normalized_images", "captions", "embeddings", "vector_index"]
DAGSTER_LAYER = {"defs", "definitions.py", "cli.py"}
PACKAGE = Path(dam_pipeline.__file__).parent


def test_definitions_load_with_six_partitioned_assets_and_jobs(settings: Settings) -> None:
    defs = build_definitions(settings.replace(faces=True))
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert sorted(specs) == sorted([*ASSETS, "faces"])
    for name in [*ASSETS, "faces"]:
        assert specs[name].partitions_def == image_prefixes
    graph = defs.resolve_asset_graph()
    for upstream, downstream in itertools.pairwise(ASSETS):
        assert dg.AssetKey(upstream) in graph.get(dg.AssetKey(downstream)).parent_keys
    faces_parents = graph.get(dg.AssetKey("faces")).parent_keys
    assert faces_parents == {dg.AssetKey("normalized_images")}
    for job in ("ingest_job", "query_job", "discover_prefixes_job", "regroup_people_job"):
        assert defs.resolve_job_def(job) is not None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {"captions": "pytorch", "embeddings": "pytorch", "vector_index": "chroma"}),
        (
            {"captioner": "groq", "embedder": "bedrock-titan", "vector_store": "pinecone"},
            {"captions": "groq", "embeddings": "bedrock", "vector_index": "pinecone"},
        ),
    ],
)
def test_asset_kinds_name_the_configured_providers(
    settings: Settings, changes: dict, expected: dict
) -> None:
    defs = build_definitions(settings.replace(**changes))
    kinds = {spec.key.to_user_string(): spec.kinds for spec in defs.resolve_all_asset_specs()}
    for asset, kind in expected.items():
        assert kind in kinds[asset]


def _retried_assets(settings: Settings) -> set[str]:
    defs = build_definitions(settings)
    return {name for name in ASSET_NAMES if defs.resolve_assets_def(name).op.retry_policy}


def test_only_steps_that_reach_a_remote_service_are_retried(settings: Settings) -> None:
    assert _retried_assets(settings) == set()  # folder, local models, embedded Chroma
    remote = settings.replace(
        source="s3://photos", captioner="groq", chroma_url="http://127.0.0.1:9"
    )
    assert _retried_assets(remote) == {
        "raw_images",
        "normalized_images",
        "captions",
        "vector_index",
    }


def test_settings_reach_sensors_and_schedules(settings: Settings) -> None:
    defs = build_definitions(settings.replace(sensor_interval_seconds=7, resync_cron="15 4 * * *"))
    assert defs.resolve_sensor_def("upload_sensor").minimum_interval_seconds == 7
    assert defs.resolve_schedule_def("nightly_resync_schedule").cron_schedule == "15 4 * * *"


def test_resync_schedule_requests_every_partition(settings: Settings, instance) -> None:
    instance.add_dynamic_partitions(image_prefixes.name, ["kitchen", "pets"])
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("nightly_resync_schedule")
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 1, 2, 3, 0, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    requests = schedule.evaluate_tick(context).run_requests
    assert sorted(r.partition_key for r in requests) == ["kitchen", "pets"]
    assert {r.tags["dam/resync"] for r in requests} == {"2026-01-02T03:00"}
    assert len({r.run_key for r in requests}) == 2


def test_the_code_location_is_named_and_loads_lazily() -> None:
    workspace = (PACKAGE.parent / "workspace.yaml").read_text()
    assert "module_name: dam_pipeline.definitions" in workspace
    assert "location_name: dam_pipeline" in workspace
    from dam_pipeline import definitions

    assert not isinstance(definitions.defs, dg.Definitions)  # built on load, not on import


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_domain_modules_never_import_dagster() -> None:
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in DAGSTER_LAYER
        and any(n == "dagster" or n.startswith(("dagster.", "dagster_")) for n in _imports(path))
    ]
    assert offenders == []


def test_only_settings_reads_the_environment() -> None:
    """``os.environ`` / ``os.getenv`` reads live in settings.py; elsewhere at most
    ``os.environ.setdefault`` for library defaults (offline models)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "settings.py":
            continue
        tree = ast.parse(path.read_text())
        setdefaults = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr == "setdefault"
        }
        offenders += [
            f"{path.relative_to(PACKAGE)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr in ("environ", "getenv")
            and id(node) not in setdefaults
        ]
    assert offenders == []


def test_dg_checks_the_project_definitions() -> None:
    """`dg` (dagster-dg-cli) understands the project: `dg check defs` loads everything."""
    import subprocess
    import sys

    checked = subprocess.run(
        [str(Path(sys.executable).parent / "dg"), "check", "defs"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
