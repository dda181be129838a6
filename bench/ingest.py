"""End-to-end ingest through Dagster on a camera-resolution library, then an unchanged
re-run. Run in its own process so that its peak RSS is its own.

With ``--remote-latency S`` the captioner is an OpenAI-compatible endpoint on loopback that
answers each image in S seconds (as a hosted vision model does), so that decoding and
captioning overlap: the stage times then add up to more than the wall time.

    python -m bench.ingest --library DIR --data DIR --json OUT [--remote-latency S]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dam_pipeline import components

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dagster as dg
import psutil

from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.ingest import materializations
from dam_pipeline.defs.instance import register_prefixes
from dam_pipeline.keys import decode_prefix
from dam_pipeline.settings import Settings

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class PeakRSS:
    """Samples this process's resident memory; ``peak_mb`` is the largest seen."""

    def __init__(self, interval: float = 0.05) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        asset: {
            k: v.value for k, v in m.metadata.items() if isinstance(v.value, int | float | bool)
        }
        for asset in ("normalized_images", "captions", "embeddings", "vector_index", "faces")
        for m in materializations(result, asset)
    }


def run(library: Path, data: Path, remote_latency: float = 0.0) -> dict:
    settings = Settings.from_env().replace(
        data_dir=data, source=str(library), chroma_path=data / "chroma"
    )
    if remote_latency:
        with _remote_captioner(remote_latency) as url:
            return _run(
                settings.replace(
                    captioner="openai", captioner_model="bench", captioner_base_url=f"{url}/v1"
                )
            )
    return _run(settings)


@contextmanager
def _remote_captioner(latency: float) -> Iterator[str]:
    from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion

    reply = json.dumps({"description": "A photograph.", "tags": ["photo"], "text": ""})

    def answer(method: str, path: str, body: dict) -> tuple[int, dict, dict]:
        time.sleep(latency)
        return 200, chat_completion(reply, model=body["model"]), {}

    with ScriptedHTTPServer(answer) as server:
        yield server.url


def _run(settings: Settings) -> dict:
    job = build_definitions(settings).resolve_job_def("ingest_job")
    with dg.instance_for_test() as instance:
        (key,) = register_prefixes(instance, components.open_source(settings))[1]
        images = sum(1 for _ in components.open_source(settings).iter_objects(decode_prefix(key)))
        with PeakRSS() as memory:
            start, cpu = time.perf_counter(), time.process_time()
            first = job.execute_in_process(partition_key=key, instance=instance, run_config=QUIET)
            first_seconds, first_cpu = time.perf_counter() - start, time.process_time() - cpu
        start = time.perf_counter()
        second = job.execute_in_process(partition_key=key, instance=instance, run_config=QUIET)
        second_seconds = time.perf_counter() - start
    first_meta, second_meta = _metadata(first), _metadata(second)
    return {
        "images": images,
        "first_run_seconds": round(first_seconds, 2),
        "images_per_second": round(images / first_seconds, 2),
        # this process only: the Chroma server's share is in ``index``
        "cpu_ms_per_image": round(first_cpu / images * 1000, 1),
        "cores_busy": round(first_cpu / first_seconds, 2),
        "peak_rss_mb": memory.peak_mb,
        "max_rss_mb_lifetime": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "stage_seconds": {
            "normalize": first_meta["normalized_images"].get("seconds_decoding"),
            "normalize_and_caption_wall": first_meta["normalized_images"].get(
                "seconds_normalize_and_caption"
            ),
            "caption_waiting_for_images": first_meta["captions"].get("seconds_waiting_for_images"),
            "caption": first_meta["captions"].get("seconds_captioning"),
            "caption_model": first_meta["captions"].get("seconds_model"),
            "embed": first_meta["embeddings"].get("seconds_embedding"),
            "index": first_meta["vector_index"].get("seconds_upserting"),
            "faces": first_meta.get("faces", {}).get("seconds_faces"),
        },
        "indexed": first_meta["vector_index"].get("indexed"),
        "rerun_seconds": round(second_seconds, 2),
        "rerun_fraction": round(second_seconds / first_seconds, 4),
        "rerun_model_calls": {
            "captions_computed": second_meta["captions"].get("computed"),
            "embeddings_computed": second_meta["embeddings"].get("computed"),
        },
        "rerun_reused": second_meta["captions"].get("reused"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--remote-latency", type=float, default=0.0)
    args = parser.parse_args()
    result = run(args.library, args.data, args.remote_latency)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
