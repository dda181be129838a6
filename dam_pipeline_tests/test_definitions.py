import ast
import itertools
from pathlib import Path

import dagster as dg

import dam_pipeline
from dam_pipeline.definitions import defs
from dam_pipeline.defs.partitions import image_prefixes

ASSETS = ["raw_images", "normalized_images", "captions", "embeddings", "vector_index"]
DAGSTER_LAYER = {"defs", "definitions.py", "cli.py"}


def test_definitions_load_with_five_partitioned_assets_and_jobs() -> None:
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert sorted(specs) == sorted(ASSETS)
    for name in ASSETS:
        assert specs[name].partitions_def == image_prefixes
    graph = defs.resolve_asset_graph()
    for upstream, downstream in itertools.pairwise(ASSETS):
        assert dg.AssetKey(upstream) in graph.get(dg.AssetKey(downstream)).parent_keys
    for job in ("ingest_job", "query_job", "discover_prefixes_job"):
        assert defs.resolve_job_def(job) is not None


def test_workspace_loads_the_definitions_module() -> None:
    workspace = Path(dam_pipeline.__file__).parent.parent / "workspace.yaml"
    assert "dam_pipeline.definitions" in workspace.read_text()


def test_domain_modules_never_import_dagster() -> None:
    package = Path(dam_pipeline.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if path.relative_to(package).parts[0] in DAGSTER_LAYER:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "dagster" or n.startswith(("dagster.", "dagster_")) for n in names):
                offenders.append(str(path.relative_to(package)))
    assert offenders == []
