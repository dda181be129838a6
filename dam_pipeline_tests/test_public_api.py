"""The package uses Dagster through its public API only: nothing from ``dagster._…``
(private modules change without notice between releases)."""

from __future__ import annotations

import ast
from pathlib import Path

import dam_pipeline

PACKAGE = Path(dam_pipeline.__file__).resolve().parent


def private_dagster_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        found += [
            name
            for name in names
            if name.split(".")[0].startswith("dagster") and "._" in f".{name}"
        ]
    return found


def test_the_walk_finds_a_private_import() -> None:
    assert private_dagster_imports("from dagster._core.launcher import RunLauncher") == [
        "dagster._core.launcher"
    ]
    assert private_dagster_imports("import dagster._serdes as s") == ["dagster._serdes"]
    assert private_dagster_imports("import dagster as dg\nfrom dagster_aws.s3 import X") == []


def test_no_module_of_the_package_imports_private_dagster_names() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in files
        if (found := private_dagster_imports(path.read_text()))
    }
    assert offenders == {}
