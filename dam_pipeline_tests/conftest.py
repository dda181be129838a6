"""Shared fixtures: real photos from scikit-image, a temporary data directory, a Dagster
instance. Everything is real (models, Chroma, Dagster); nothing here needs the network."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dam_pipeline import components

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Local Chroma servers started by `dam` subprocesses in folders the fixtures do not clean
# (the bench's temporary directories) stop soon after their last client, not 5 min later.
os.environ.setdefault("DAM_CHROMA_SERVER_IDLE_SECONDS", "15")

import dagster as dg
import pytest
from PIL import Image

from dam_pipeline.defs.ingest import materializations
from dam_pipeline.demo import build_demo_library, skimage_data_dir
from dam_pipeline.settings import Settings
from dam_pipeline.vector_stores.local_chroma import stop_servers_under


def photo(name: str) -> Image.Image:
    """A real photograph shipped by scikit-image (chelsea, coffee, rocket, astronaut ...)."""
    path = next(skimage_data_dir().glob(f"{name}.*"))
    with Image.open(path) as image:
        return image.convert("RGB")


def jpeg_bytes(image: Image.Image, **save_args) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90, **save_args)
    return out.getvalue()


def write_library(root: Path, files: dict[str, bytes | str]) -> None:
    """Write ``key -> bytes`` (or the name of a scikit-image photo) under ``root``."""
    for key, content in files.items():
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(jpeg_bytes(photo(content)) if isinstance(content, str) else content)


# The order files are handed to the two xdist workers (xdist's own reordering is off in
# setup.cfg); the rest follow in collection order. The files that start many processes
# (daemons, webservers, run workers, `dam` commands) are spread out so that they seldom run
# at the same time, each beside files that mostly compute in-process: together on two cores
# they took twice as long. Times measured with `pytest --durations=0`.
RUN_ORDER = (
    "test_daemon.py",  # ~75 s: a daemon follows a bucket; a killed run; the pool
    "test_pipeline.py",
    "test_asset_graph.py",  # ~70 s: webserver + daemon, the UI's launches
    "test_s3_source.py",
    "test_web.py",
    "test_web_hardening.py",  # ~40 s: a schema fuzzer against the live app, upload limits
    "test_shared_daemon.py",  # ~50 s: the daemon on the Postgres instance
    "test_incremental.py",
    "test_provider_faults.py",  # ~30 s: a misbehaving chat server, five ingests
    "test_search.py",
    "test_video.py",  # ~40 s: clips written, ingested, played in chromium
    "test_live_library.py",  # ~35 s: dam serve while dam ingest writes
    "test_reranking.py",  # ~25 s: a small library ingested, a scoring server
    "test_cli.py",
    "test_shared_profile.py",  # ~55 s
    "test_costs.py",  # ~20 s: three ingests against a server reporting usage
    "test_adversarial.py",
    "test_docs.py",
    "test_bench_smoke.py",  # ~35 s
)


SYSTEM_FILES = frozenset(
    {
        "test_daemon.py",
        "test_asset_graph.py",
        "test_shared_daemon.py",
        "test_shared_profile.py",
        "test_live_library.py",
        "test_bench_smoke.py",
    }
)
"""The system proofs: whole daemons, webservers, several machines and the bench, a minute
each. `make test-system` runs them (and `.ci/run`, after `make test`), so that `make test`
stays within five minutes."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: place for place, name in enumerate(RUN_ORDER)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
    for item in items:
        if item.path.name in SYSTEM_FILES:
            item.add_marker(pytest.mark.system)


@pytest.fixture(autouse=True)
def environment_is_restored() -> Iterator[None]:
    """Tests change the configuration in the environment through monkeypatch only: what a
    test sets is gone when it ends (this runs first and is torn down last). Libraries that
    set their own variables on import (torch) are not the tests' doing."""
    watched = {*Settings.variables(), "DAGSTER_HOME", "PATH"}
    before = {name: os.environ.get(name) for name in watched}
    yield
    changed = sorted(name for name in watched if os.environ.get(name) != before[name])
    assert not changed, f"the test left environment variables changed: {changed}"


@pytest.fixture(autouse=True)
def local_chroma_servers_stopped(tmp_path: Path) -> Iterator[None]:
    """Each test's Chroma folders are served by local servers (``local_chroma``) that would
    outlive it while this worker holds their lease: stopped when the test ends."""
    yield
    stop_servers_under(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def all_local_chroma_servers_stopped(tmp_path_factory) -> Iterator[None]:
    """And those of module- and session-wide libraries, when the session ends (the shared
    library's too: a worker still using it starts it again)."""
    yield
    basetemp = tmp_path_factory.getbasetemp()
    stop_servers_under(basetemp)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        stop_servers_under(basetemp.parent / "shared_library")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A library of its own; the faces stage off (an extra Dagster step in each of the
    suite's many ingests): the people tests, the shared library and the README's commands
    run with it on, as the defaults have it."""
    data = tmp_path / "data"
    return Settings(
        data_dir=data,
        source=str(data / "library"),
        chroma_path=data / "chroma",
        dagster_home=data / "dagster_home",
        workers=2,
        faces=False,
    )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from dam_pipeline_tests.servers import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> Iterator[str]:
    """A real Postgres 16 with pgvector on 127.0.0.1, for the session (see servers.py)."""
    from dam_pipeline_tests.servers import postgres_server

    with postgres_server(tmp_path_factory.mktemp("postgres") / "data") as url:
        yield url


@pytest.fixture
def database_url(postgres_url: str, request) -> str:
    """A new, empty database on that server for one test."""
    import re
    import uuid

    import psycopg

    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40] + uuid.uuid4().hex[:8]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, request):
    """Settings whose source is a fresh bucket on the moto server, with a root prefix."""
    import re

    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return settings.replace(
        source=f"s3://{bucket}/library",
        s3_endpoint_url=s3_endpoint,
        aws_region="us-east-1",
    )


def s3_client(settings: Settings):
    import boto3

    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")


def moto_client(endpoint: str):
    """A client of the moto server with its test credentials, whatever the environment."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def upload(settings: Settings, files: dict[str, bytes | str]) -> None:
    """Put ``key -> bytes`` (or a scikit-image photo name) under the source's root prefix."""
    from concurrent.futures import ThreadPoolExecutor

    from dam_pipeline.sources import parse_s3_uri

    bucket, root = parse_s3_uri(settings.source)
    client = s3_client(settings)

    def put(item: tuple[str, bytes | str]) -> None:
        key, content = item
        body = jpeg_bytes(photo(content)) if isinstance(content, str) else content
        client.put_object(Bucket=bucket, Key=f"{root}/{key}" if root else key, Body=body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, files.items()))


def delete(settings: Settings, keys: list[str]) -> None:
    from dam_pipeline.sources import parse_s3_uri

    bucket, root = parse_s3_uri(settings.source)
    client = s3_client(settings)
    for key in keys:
        client.delete_object(Bucket=bucket, Key=f"{root}/{key}" if root else key)


ASSETS = ("raw_images", "normalized_images", "captions", "embeddings", "vector_index")
"""The chain of assets from the source to the index; ``faces`` branches off after
normalized_images."""


def plain(value: dg.MetadataValue):
    """A metadata value as a test reads it; a table becomes one line per row."""
    if isinstance(value, dg.TableMetadataValue):
        return "\n".join(" | ".join(map(str, r.data.values())) for r in value.records)
    return value.value


def ingest(settings: Settings, instance: dg.DagsterInstance) -> dict[str, dict]:
    """Register the prefixes and run ingest_job for each; returns each partition's
    materialization metadata by asset."""
    from dam_pipeline.definitions import build_definitions
    from dam_pipeline.defs.instance import register_prefixes

    _, keys = register_prefixes(instance, components.open_source(settings))
    job = build_definitions(settings).resolve_job_def("ingest_job")
    results = {}
    for key in keys:
        result = job.execute_in_process(partition_key=key, instance=instance)
        assert result.success
        results[key] = {
            asset: {k: plain(v) for k, v in m.metadata.items()}
            for asset in (*ASSETS, "faces")
            for m in materializations(result, asset)
        }
    return results


def sign(text: str, width: int = 1000, ink: str = "black", paper: str = "white") -> bytes:
    """A shop sign: words only OCR can find."""
    from PIL import ImageDraw, ImageFont

    image = Image.new("RGB", (width, 320), paper)
    ImageDraw.Draw(image).text((40, 100), text, fill=ink, font=ImageFont.load_default(size=90))
    return jpeg_bytes(image)


def dated(name: str, when: str, offset: str = "") -> bytes:
    """A photo whose EXIF says when it was taken (``YYYY:MM:DD HH:MM:SS``) and, with
    ``offset`` (``+02:00``), in which time zone."""
    exif = Image.Exif()
    taken = {0x9003: when}  # Exif IFD: DateTimeOriginal
    if offset:
        taken[0x9011] = offset  # OffsetTimeOriginal
    exif[0x8769] = taken
    return jpeg_bytes(photo(name), exif=exif.tobytes())


def reencoded(name: str) -> bytes:
    """A smaller, lower-quality copy: a near duplicate, different in every byte."""
    image = Image.open(io.BytesIO(jpeg_bytes(photo(name))))
    smaller = image.resize((image.width * 3 // 4, image.height * 3 // 4))
    out = io.BytesIO()
    smaller.save(out, format="JPEG", quality=55)
    return out.getvalue()


HOSTILE = "posters/<img src=x onerror=alert(1)>.jpg"
HOSTILE_TEXT = "<script>alert(1)</script>"
"""A file name and a text in the image that a careless page would run."""
SHARED_EXTRAS: dict[str, bytes | str] = {
    "pets & animals/chelsea copy.jpg": reencoded("chelsea"),
    "pets & animals/notes.txt": b"not an image, ignored by name",
    "pets & animals/broken.jpg": b"\xff\xd8\xff\xe0 this is not really a jpeg",
    "kitchen/coffee.jpg": dated("coffee", "2019:06:01 08:30:00"),
    "signs/shopfront.jpg": sign("ACME ROASTERS"),
    HOSTILE: sign(HOSTILE_TEXT, width=1400, ink="white", paper="black"),
}
"""Added to the demo library (which fills in the rest) for the shared test library."""
CAT = "pets & animals/chelsea the cat.jpg"
CAT_COPY = "pets & animals/chelsea copy.jpg"


@dataclass(frozen=True)
class IngestedLibrary:
    settings: Settings
    results: dict[str, dict]
    """vector_index (etc.) metadata of the first ingest, per partition."""


@pytest.fixture(scope="session")
def shared_library(tmp_path_factory) -> IngestedLibrary:
    """The demo library (what `make demo` builds) plus a few awkward files, ingested once
    for the whole session: the first xdist worker that needs it builds it, the other reads
    it. Read-only: tests that change a library make their own."""
    import json

    from dam_pipeline.locks import exclusive

    session = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        session = session.parent  # the folder every worker of this session shares
    root = session / "shared_library"
    data = root / "data"
    settings = Settings(data_dir=data, dagster_home=data / "dagster_home", workers=2)
    built = root / "results.json"
    with exclusive(root / "build.lock", "the shared test library"):
        if not built.exists():
            write_library(settings.layout.library, SHARED_EXTRAS)
            # the demo clip's shots repeat the demo photos' captions, which would tie with
            # them in the similarity tests; videos have their own library (test_video.py)
            build_demo_library(settings.layout.library, clip=False)
            with dg.instance_for_test() as instance:
                built.write_text(json.dumps(ingest(settings, instance)))
    return IngestedLibrary(settings, json.loads(built.read_text()))


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def dam(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run `dam ARGS` in-process with DAM_DATA_DIR (and any other variables) set. Ask for
    it after ``instance`` so that its environment is undone first."""

    def run(settings: Settings, *args: str, **env: str) -> Ran:
        monkeypatch.setenv("DAM_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("DAGSTER_HOME", str(settings.layout.dagster_home))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        from dam_pipeline import cli

        code = cli.main(list(args))
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="module")
def web_library(shared_library: IngestedLibrary):
    """The shared library opened once per module, as `dam serve` opens it."""
    from dam_pipeline.library import Library

    return Library(shared_library.settings)


@pytest.fixture(scope="module")
def client(shared_library: IngestedLibrary, web_library):
    """The web app over the shared library, through FastAPI's test client (as localhost)."""
    from fastapi.testclient import TestClient

    from dam_pipeline.web import create_app

    return TestClient(create_app(shared_library.settings, web_library), base_url="http://localhost")
