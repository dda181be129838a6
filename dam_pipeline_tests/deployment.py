"""A deployment of the shared profile on one machine, for the tests that prove it: a real
Postgres with pgvector and moto's S3 server; every "machine" is a process with an empty
directory of its own, sharing nothing but the two URLs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from dam_pipeline.postgres import PostgresDatabase
from dam_pipeline_tests.conftest import jpeg_bytes, moto_client, photo

BIN = Path(sys.executable).parent


class Deployment:
    def __init__(self, root: Path, pg_url: str, s3_url: str, bucket: str) -> None:
        self.root = root
        self.pg_url = pg_url
        self.s3_url = s3_url
        self.bucket = bucket
        self.machines = 0

    def env(self, **extra: str) -> dict[str, str]:
        """A new machine: its own empty directory, nothing shared but Postgres and S3."""
        self.machines += 1
        home = self.root / f"machine-{self.machines}"
        home.mkdir()
        kept = {
            k: v for k, v in os.environ.items() if not k.startswith(("DAM_", "DAGSTER_", "AWS_"))
        }
        return {
            **kept,
            "DAM_DATA_DIR": str(home / "data"),
            "DAGSTER_HOME": str(home / "dagster_home"),
            "DAGSTER_PG_URL": self.pg_url,
            "DAM_STATE_URL": self.pg_url,
            "DAM_VECTOR_STORE": "pgvector",
            "DAM_OBJECT_STORE": f"s3://{self.bucket}-objects/normalized",
            "DAM_SOURCE": f"s3://{self.bucket}",
            "DAM_WORKERS": "1",
            "AWS_ENDPOINT_URL": self.s3_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            **extra,
        }

    def dam(self, env: dict[str, str], *args: str) -> subprocess.Popen:
        """`dam ARGS` on that machine, in its own directory."""
        return subprocess.Popen(
            [BIN / "dam", *args],
            env=env,
            cwd=Path(env["DAM_DATA_DIR"]).parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def sql(self, query: str, *args) -> list[tuple]:
        with PostgresDatabase(self.pg_url).cursor() as cursor:
            cursor.execute(query, args)
            return cursor.fetchall()


@contextmanager
def deployment(
    root: Path, postgres_url: str, s3_endpoint: str, bucket: str, photos: dict[str, str]
) -> Iterator[Deployment]:
    """A database of its own on the Postgres server, a bucket holding ``photos`` (key ->
    scikit-image photo) and an empty one for normalized images."""
    client = moto_client(s3_endpoint)
    for name in (bucket, f"{bucket}-objects"):
        client.create_bucket(Bucket=name)
    for key, name in photos.items():
        client.put_object(Bucket=bucket, Key=key, Body=jpeg_bytes(photo(name)))
    database = f"{bucket.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    yield Deployment(root, postgres_url.rsplit("/", 1)[0] + f"/{database}", s3_endpoint, bucket)


def finished(process: subprocess.Popen, timeout: float = 240) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"{process.args}: {out}\n{err}"
    return out


def state_left_on_disk(env: dict[str, str]) -> list[str]:
    """Anything the pipeline remembers, found in a machine's own folder (its DAGSTER_HOME
    holds only dagster.yaml and Dagster's own logs)."""
    home = Path(env["DAM_DATA_DIR"]).parent
    return sorted(
        str(path.relative_to(home))
        for path in home.rglob("*")
        if path.is_file() and "dagster_home" not in path.parts
    )
