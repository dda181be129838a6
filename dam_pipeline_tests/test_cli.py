"""The `dam` command as a user runs it: once as a real process, the rest in-process (same
entry point, `main(argv)`, configured by the environment) so the models load once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dam_pipeline import cli
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import IngestedLibrary, write_library


def test_the_installed_command_searches_as_a_separate_process(
    shared_library: IngestedLibrary,
) -> None:
    settings = shared_library.settings
    env = {**os.environ, "DAM_DATA_DIR": str(settings.data_dir)}
    found = subprocess.run(
        [
            sys.executable,
            "-m",
            "dam_pipeline.cli",
            "search",
            "a cup of coffee",
            "--json",
            "-k",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["key"] == "kitchen/coffee.jpg"
    assert hits[0]["url"].endswith("kitchen/coffee.jpg")


def test_ingest_then_search_and_ask(settings: Settings, dam) -> None:
    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea", "food/coffee.jpg": "coffee"})
    prefixes = dam(settings, "prefixes")
    assert prefixes.code == 0, prefixes.err
    assert "2 prefixes, 2 new" in prefixes.out

    ingest = dam(settings, "ingest")
    assert ingest.code == 0, ingest.err
    assert ingest.out.count(" ok ") == 2 and "indexed 1" in ingest.out

    asked = dam(settings, "ask", "is there a cat?")
    assert asked.code == 0, asked.err
    assert "pets/cat.jpg [S1]" in asked.out

    as_json = json.loads(dam(settings, "ask", "is there a cat?", "--json").out)
    assert as_json["citations"][0] == {"source": "S1", "key": "pets/cat.jpg"}


def test_ingest_says_when_a_partition_did_not_reach_its_goal(settings: Settings, dam) -> None:
    write_library(settings.layout.library, {f"pets/{i}.jpg": "chelsea" for i in range(3)})
    assert dam(settings, "ingest").code == 0
    for i in range(2):
        (settings.layout.library / "pets" / f"{i}.jpg").unlink()
    refused = dam(settings, "ingest")
    assert refused.code == 1
    assert "partial" in refused.out and "deletion_blocked (2 would vanish)" in refused.out


def test_control_characters_in_names_are_escaped(settings: Settings, dam) -> None:
    name = "pets/\x1b[31mred\n1. FORGED.jpg"
    write_library(settings.layout.library, {name: "chelsea"})
    assert dam(settings, "ingest", "--quiet").code == 0
    found = dam(settings, "search", "a cat")
    assert "\x1b" not in found.out and "\\x1b[31mred\\x0a1. FORGED.jpg" in found.out
    assert json.loads(dam(settings, "search", "a cat", "--json").out)[0]["key"] == name


def test_an_empty_index_is_an_error_that_creates_nothing(tmp_path, dam) -> None:
    empty = Settings(data_dir=tmp_path / "data")
    result = dam(empty, "search", "a cat")
    assert result.code == 2
    assert result.err.strip() == (
        f"dam: The index is empty ({empty.data_dir}): run `dam ingest` first."
    )
    assert not empty.data_dir.exists()


def test_an_unknown_prefix_lists_the_known_ones(shared_library: IngestedLibrary, dam) -> None:
    result = dam(shared_library.settings, "search", "cake", "--prefix", "parties")
    assert result.code == 2
    assert "Unknown prefix 'parties'" in result.err and "'kitchen'" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_bad_setting_is_refused_before_any_run(settings: Settings, dam) -> None:
    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea"})
    result = dam(settings, "ingest", DAM_CAPTIONER="bogus")
    assert result.code == 2
    assert result.err.strip() == (
        "dam: DAM_CAPTIONER='bogus' is not valid: expected 'local', 'groq' or 'openai'. "
        "Fix it or unset it."
    )
    assert not settings.layout.manifests.exists()


def test_an_unreachable_chroma_server_is_named(shared_library: IngestedLibrary, dam) -> None:
    result = dam(shared_library.settings, "search", "a cat", DAM_CHROMA_URL="http://127.0.0.1:9")
    assert result.code == 2
    assert "Chroma server at http://127.0.0.1:9" in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_missing_library_is_a_clear_error(settings: Settings, dam) -> None:
    result = dam(settings, "prefixes")
    assert result.code == 2
    assert "does not exist" in result.err and "DAM_SOURCE" in result.err


def test_a_missing_bucket_and_an_unreachable_endpoint_are_one_line(
    settings: Settings, s3_endpoint: str, dam
) -> None:
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    missing = dam(
        settings,
        "prefixes",
        DAM_SOURCE="s3://missing-bucket",
        AWS_ENDPOINT_URL=s3_endpoint,
        AWS_REGION="us-east-1",
        **keys,
    )
    assert missing.code == 2
    assert "bucket 'missing-bucket' does not exist" in missing.err
    assert len(missing.err.strip().splitlines()) == 1
    unreachable = dam(
        settings,
        "prefixes",
        DAM_SOURCE="s3://photos",
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_REGION="us-east-1",
        **keys,
    )
    assert unreachable.code == 2
    assert "cannot reach http://127.0.0.1:9" in unreachable.err
    assert len(unreachable.err.strip().splitlines()) == 1


def test_help_is_plain_text_with_a_line_per_command(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert "``" not in text
    for command in ("demo", "ingest", "search", "ask", "similar", "duplicates", "prefixes"):
        assert f"\n    {command}" in text or f"  dam {command}" in text
    with pytest.raises(SystemExit):
        cli.main(["search", "--help"])
    assert "--prefix" in capsys.readouterr().out


def test_init_home_upgrades_its_own_old_dagster_yaml_and_leaves_yours(
    settings: Settings, monkeypatch
) -> None:
    import dagster as dg

    from dam_pipeline.defs.instance import (
        dagster_yaml,
        ensure_dagster_home,
        ensure_pool_limit,
        open_instance,
    )

    home = Path(settings.dagster_home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    home.mkdir(parents=True, exist_ok=True)
    old = "# Written by `dam init-home`. One writer.\nrun_queue:\n  max_concurrent_runs: 1\n"
    (home / "dagster.yaml").write_text(old)
    ensure_dagster_home(settings)
    assert (home / "dagster.yaml").read_text() == dagster_yaml(settings)
    assert (home / "dagster.yaml.previous").read_text() == old
    instance = dg.DagsterInstance.from_config(str(home))
    concurrency = instance.get_concurrency_config()
    assert concurrency.run_queue_config.max_concurrent_runs == 10
    # one writer of the embedded index at a time, whatever path starts the run
    assert concurrency.pool_config.default_pool_limit == 1
    assert concurrency.pool_config.pool_granularity.value == "op"
    server = settings.replace(chroma_url="http://127.0.0.1:9")
    assert "default_limit: 4" in dagster_yaml(server)
    # the pool's limit exists before any run claims it (runs starting together on a
    # Postgres instance raced to create it, and one failed): `dam` sets it on opening the
    # instance, the code location's sensor when the daemon starts, and both follow the store
    assert "dam_index_writer" not in instance.event_log_storage.get_concurrency_keys()
    open_instance(settings)  # as every `dam` command does
    assert instance.event_log_storage.get_concurrency_info("dam_index_writer").slot_count == 1
    assert not ensure_pool_limit(instance, settings)  # already right: nothing to do
    assert ensure_pool_limit(instance, server)
    assert instance.event_log_storage.get_concurrency_info("dam_index_writer").slot_count == 4

    mine = "telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(mine)
    ensure_dagster_home(settings)
    assert (home / "dagster.yaml").read_text() == mine


def test_init_home_puts_the_instance_in_postgres_and_keeps_it_there(
    settings: Settings, dam
) -> None:
    import yaml

    url = "postgresql://dam:s3cret@db.internal:5432/dam"
    ran = dam(settings, "init-home", "--postgres", url)
    config = Path(ran.out.strip()) / "dagster.yaml"
    storage = yaml.safe_load(config.read_text())["storage"]["postgres"]
    # dagster-postgres speaks psycopg2; a bare postgresql:// now means psycopg 3 to SQLAlchemy
    assert storage["postgres_url"] == "postgresql+psycopg2://dam:s3cret@db.internal:5432/dam"
    assert config.stat().st_mode & 0o077 == 0  # it holds a password
    dam(settings, "init-home")  # a later command without the URL leaves it alone
    assert "postgresql+psycopg2://" in config.read_text()
    assert dam(settings, "init-home", "--postgres", "mysql://x").code == 2
