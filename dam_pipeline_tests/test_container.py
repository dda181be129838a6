"""What can be checked of the container without building it (`make image-test` builds and
runs it): the Dockerfile's stages, user, entrypoint and health check; compose.yaml parses
and names only settings that exist; and the page refuses to open to the network with no
token."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import dam_pipeline
from dam_pipeline.settings import Settings

PROJECT = Path(dam_pipeline.__file__).resolve().parent.parent


def instructions() -> list[tuple[str, str]]:
    text = (PROJECT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    rows = [line.strip() for line in joined.splitlines()]
    return [tuple(line.split(None, 1)) for line in rows if line and not line.startswith("#")]


def test_the_dockerfile_builds_a_small_non_root_image_that_runs_dam() -> None:
    steps = instructions()
    stages = [args for op, args in steps if op == "FROM"]
    assert stages == ["${BASE} AS build", "${BASE} AS runtime"]
    assert ("ARG", "BASE=python:3.11-slim-bookworm") in steps
    runtime = steps[[i for i, (op, _) in enumerate(steps) if op == "FROM"][1] :]
    copied = [args for op, args in runtime if op == "COPY"]
    assert copied == ["--from=build /opt/dam /opt/dam"]  # only the virtualenv
    runs = " ".join(args for op, args in runtime if op == "RUN")
    assert "tesseract-ocr" in runs and "gcc" not in runs and "pip" not in runs
    (user,) = [args for op, args in runtime if op == "USER"]
    assert user not in ("root", "0")
    env = " ".join(args for op, args in runtime if op == "ENV")
    assert "HF_HUB_OFFLINE=1" in env and "DAM_DATA_DIR=/data" in env
    assert ("ENTRYPOINT", '["dam"]') in runtime and ("CMD", '["serve"]') in runtime
    assert any(op == "HEALTHCHECK" and "/health" in args for op, args in runtime)
    assert ("VOLUME", '["/data"]') in runtime
    lines = (PROJECT / ".dockerignore").read_text().splitlines()
    ignored = [line for line in lines if line and not line.startswith("#")]
    assert ignored[0] == "*" and "!dam_pipeline/" in ignored  # nothing else in the context


def test_compose_parses_and_names_only_settings_that_exist() -> None:
    compose = yaml.safe_load((PROJECT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "init", "daemon", "dagster", "search"} <= set(services)
    known = {
        field.validation_alias.choices[0] if field.validation_alias else f"DAM_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if not isinstance(field.validation_alias, str)
    }
    known |= {"DAGSTER_PG_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
    own = {"POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD", "MINIO_ROOT_USER",
           "MINIO_ROOT_PASSWORD"}  # fmt: skip
    for name, service in services.items():
        for variable in service.get("environment", {}):
            assert variable in known | own, f"{name}: {variable} is not a setting"
    env_file = (PROJECT / "compose.env.example").read_text()
    for line in env_file.splitlines():
        variable = line.lstrip("# ").split("=", 1)[0]
        if "=" in line and variable.isupper():
            assert variable in known | own, f"compose.env.example: {variable}"
    for service in ("daemon", "dagster", "search"):
        assert services[service]["image"].endswith("dam_pipeline:latest}")


def test_serving_beyond_loopback_needs_a_token_or_an_explicit_opt_out(
    settings: Settings, dam
) -> None:
    refused = dam(settings, "serve", "--host", "0.0.0.0", "--port", "1")
    assert refused.code == 2 and "DAM_API_TOKEN" in refused.err
    assert "DAM_SERVE_WITHOUT_TOKEN" in refused.err and "\n" not in refused.err.strip()
