"""The CLI as a user runs it: a separate process, configured by the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import write_library


def run_dam(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DAM_DATA_DIR": str(settings.data_dir),
        "DAGSTER_HOME": str(settings.layout.dagster_home),
    }
    return subprocess.run(
        [sys.executable, "-m", "dam_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_ingest_then_search_and_ask_from_the_command_line(settings: Settings) -> None:
    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea", "food/coffee.jpg": "coffee"})

    prefixes = run_dam(settings, "prefixes")
    assert prefixes.returncode == 0, prefixes.stderr
    assert "2 prefixes, 2 new" in prefixes.stdout

    ingest = run_dam(settings, "ingest")
    assert ingest.returncode == 0, ingest.stderr
    assert ingest.stdout.count(" ok ") == 2

    found = run_dam(settings, "search", "a cup of coffee", "--json", "-k", "2")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["key"] == "food/coffee.jpg"
    assert hits[0]["url"].endswith("food/coffee.jpg")

    asked = run_dam(settings, "ask", "is there a cat?")
    assert asked.returncode == 0, asked.stderr
    assert "pets/cat.jpg [S1]" in asked.stdout


def test_missing_library_is_a_clear_error(settings: Settings) -> None:
    result = run_dam(settings, "prefixes")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "DAM_SOURCE" in result.stderr
