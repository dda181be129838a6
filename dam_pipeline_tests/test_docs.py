"""The README and .env.example tell the truth: every command and code example in the README
runs, against the demo library, and every setting is documented with its real default."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

import dam_pipeline
from dam_pipeline import cli
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import IngestedLibrary

PROJECT = Path(dam_pipeline.__file__).resolve().parent.parent
README = (PROJECT / "README.md").read_text()
ENV_EXAMPLE = (PROJECT / ".env.example").read_text()
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README) if lang == language]


def commands() -> list[str]:
    """Every command line of the README's bash blocks, without trailing comments."""
    lines = []
    for body in blocks("bash"):
        for line in body.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def test_the_readme_has_runnable_blocks_only() -> None:
    languages = {lang for lang, _ in BLOCK.findall(README)}
    assert languages <= {"bash", "python", "dotenv", "text"}, languages
    assert "make demo" in commands() and "make test" in commands()


@pytest.mark.parametrize("line", [c for c in commands() if c.startswith("make ")])
def test_make_targets_exist(line: str) -> None:
    target = line.split()[1]
    dry_run = subprocess.run(
        ["make", "-n", target], cwd=PROJECT, capture_output=True, text=True, check=False
    )
    assert dry_run.returncode == 0, dry_run.stderr


@pytest.fixture
def demo_env(shared_library: IngestedLibrary, tmp_path, monkeypatch) -> IngestedLibrary:
    """The README's setting: the demo library's data directory, a Dagster instance of its
    own, and the working directory above ``data/``."""
    monkeypatch.setenv("DAM_DATA_DIR", str(shared_library.settings.data_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.chdir(shared_library.settings.data_dir.parent)
    return shared_library


def test_every_dam_command_in_the_readme_runs(demo_env: IngestedLibrary, capsys) -> None:
    dam_lines = [c for c in commands() if c.startswith(".venv/bin/dam ")]
    assert len(dam_lines) >= 8
    for line in dam_lines:
        code = cli.main(shlex.split(line)[1:])
        captured = capsys.readouterr()
        assert code == 0, f"{line}\n{captured.err}"
        assert captured.out.strip(), line
        assert "Nothing in the library matches" not in captured.out, line


def test_every_curl_command_in_the_readme_runs(demo_env: IngestedLibrary) -> None:
    """Against `dam serve`'s app on the demo library (on a free port instead of 8000)."""
    from dam_pipeline.web import create_app
    from dam_pipeline.web.server import running

    calls = [c for c in commands() if c.startswith("curl ")]
    assert len(calls) >= 5
    with running(create_app(demo_env.settings)) as address:
        for line in calls:
            done = subprocess.run(
                ["bash", "-c", line.replace("http://127.0.0.1:8000", address)],
                cwd=demo_env.settings.data_dir.parent,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{line}\n{done.stderr}"
            body = json.loads(done.stdout)
            assert body.get("hits") or body.get("groups") is not None or body.get("prefixes")


def test_every_other_shell_command_in_the_readme_runs(demo_env: IngestedLibrary) -> None:
    others = [c for c in commands() if not c.startswith(("make ", ".venv/bin/dam ", "curl "))]
    assert others, "the backfill command"
    assert cli.main(["--quiet", "prefixes"]) == 0  # the instance knows the partitions
    for line in others:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=PROJECT,
            env={**os.environ},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{line}\n{done.stderr[-2000:]}"
    import dagster as dg

    instance = dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])
    (backfill,) = instance.get_backfills()
    assert sorted(backfill.partition_names) == ["kitchen", "street"]


def test_every_python_example_in_the_readme_runs(demo_env: IngestedLibrary, capsys) -> None:
    examples = blocks("python")
    assert examples
    for code in examples:
        exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "kitchen/coffee.jpg" in printed and "[S1]" in printed


def _table_variables() -> set[str]:
    section = README[README.index("## Configuration") :]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def _example_variables() -> dict[str, str]:
    found = {}
    for line in ENV_EXAMPLE.splitlines():
        match = re.match(r"#\s*([A-Z][A-Z0-9_]+)=(.*)$", line)
        if match:
            value = re.split(r"(?:^|\s+)#\s", match.group(2))[0].strip()
            found[match.group(1)] = value
    return found


def test_every_setting_is_in_the_readme_table_and_env_example() -> None:
    variables = set(Settings.variables())
    assert variables - _table_variables() == set()
    assert variables - set(_example_variables()) == set()
    assert _table_variables() - variables == set()
    assert set(_example_variables()) - variables == set()


def test_env_example_values_are_the_defaults(monkeypatch, tmp_path) -> None:
    for name in Settings.variables():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(PROJECT)
    default = Settings()
    for name, value in _example_variables().items():
        with monkeypatch.context() as env:
            env.setenv(name, value)
            assert Settings() == default, f"{name}={value} in .env.example is not the default"


def test_every_dotenv_block_names_real_settings_with_valid_values(monkeypatch) -> None:
    """The configuration examples (S3, MinIO, Supabase, scaling out) are what Settings reads."""
    known = set(Settings.variables())
    examples = blocks("dotenv")
    assert any("DAM_STATE_URL" in body for body in examples)
    for body in examples:
        pairs = [
            line.split("=", 1)
            for line in body.splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert {name for name, _ in pairs} <= known, body
        with monkeypatch.context() as env:
            for name in known:
                env.delenv(name, raising=False)
            for name, value in pairs:
                if value != "...":
                    env.setenv(name, value)
            Settings.from_env()  # raises SettingsError, naming the variable, if one is wrong
