"""What a misbehaving provider costs: one partition of 20 photos ingested through Dagster
with the vision captioner pointed at a local chat-completions server in each fault mode.
Reports requests sent and paid calls per image (answers received, and timed-out requests
the provider may have billed), the partition's wall time, and what was captioned, failed
and deferred, beside the healthy figure.

    python -m bench.provider_faults --images 20 --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dagster as dg

from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.ingest import materializations
from dam_pipeline.defs.instance import register_prefixes
from dam_pipeline.demo import skimage_data_dir
from dam_pipeline.settings import Settings
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
TIMEOUT = 2.0
"""DAM_LLM_TIMEOUT of the bench: the slow mode answers after 1.5 x this."""
GOOD = json.dumps({"description": "A photo on a table.", "tags": ["photo"], "text": ""})
ERROR = {"error": {"message": "failure"}}


class FaultMode:
    """A handler for the scripted server that fails each request the way ``name`` says;
    ``paid`` counts the requests a provider would bill (it answered, or it timed out)."""

    def __init__(self, name: str, reply: Callable[[int, int], tuple[int, object, dict]]) -> None:
        self.name = name
        self.reply = reply
        """(request number, this image's request number) -> the scripted answer."""
        self.paid = 0
        self._count = 0
        self._per_image: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, body: dict) -> tuple[int, object, dict]:
        image = json.dumps(body["messages"][0]["content"][-1])[-64:]  # the image's data URL
        with self._lock:
            self._count += 1
            number = self._count
            self._per_image[image] = self._per_image.get(image, 0) + 1
            attempt = self._per_image[image]
        status, payload, headers = self.reply(number, attempt)
        if status == 0:  # slow: the client gives up first
            time.sleep(float(payload))
            status, payload, headers = 200, chat_completion(GOOD), {}
        if status == 200:
            with self._lock:
                self.paid += 1
        return status, payload, headers


def modes() -> list[FaultMode]:
    ok = (200, chat_completion(GOOD), {})
    slow = (0, 1.5 * TIMEOUT, {})
    return [
        FaultMode("healthy", lambda n, a: ok),
        FaultMode(
            "off-schema JSON (other keys)",
            lambda n, a: (200, chat_completion('{"caption": "x"}'), {}),
        ),
        FaultMode("JSON without the fields", lambda n, a: (200, chat_completion('{"foo": 1}'), {})),
        FaultMode("not JSON (prose)", lambda n, a: (200, chat_completion("Sure! A photo."), {})),
        FaultMode(
            "invalid UTF-8",
            lambda n, a: (200, b'{"choices": [{"message": {"content": "\xe9"}}]}', {}),
        ),
        FaultMode(
            "cut off (finish_reason length)",
            lambda n, a: (200, chat_completion('{"de', finish="length"), {}),
        ),
        FaultMode("one image slow (its first request)", lambda n, a: slow if n == 1 else ok),
        FaultMode("every request slow (1.5 x the deadline)", lambda n, a: slow),
        FaultMode("401 (wrong key)", lambda n, a: (401, ERROR, {})),
        FaultMode(
            "429 with Retry-After 1, then success",
            lambda n, a: (429, ERROR, {"retry-after": "1"}) if a == 1 else ok,
        ),
        FaultMode("500, then success", lambda n, a: (500, ERROR, {}) if a == 1 else ok),
        FaultMode("always 503 (down)", lambda n, a: (503, ERROR, {})),
    ]


def _library(folder: Path, images: int) -> None:
    from PIL import Image

    names = ("coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png")
    stills = [Image.open(skimage_data_dir() / n).convert("RGB") for n in names]
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    for index in range(images):
        still = stills[index % len(stills)].resize((320 + index, 240))  # each its own content
        still.save(folder / "photos" / f"{index:03d}.jpg", quality=90)


def measure(mode: FaultMode, images: int, work: Path) -> dict:
    folder, data = work / "library", work / "data"
    _library(folder, images)
    with ScriptedHTTPServer(mode) as server:
        settings = Settings(
            data_dir=data,
            source=str(folder),
            chroma_path=data / "chroma",
            captioner="openai",
            captioner_model="vision",
            captioner_base_url=f"{server.url}/v1",
            llm_timeout=TIMEOUT,
        )
        job = build_definitions(settings).resolve_job_def("ingest_job")
        with dg.instance_for_test() as instance:
            (key,) = register_prefixes(instance, build_source(settings))[1]
            started = time.perf_counter()
            result = job.execute_in_process(
                partition_key=key, instance=instance, run_config=QUIET, raise_on_error=False
            )
            seconds = time.perf_counter() - started
        captions = {}
        for materialization in materializations(result, "captions"):
            captions = {k: v.value for k, v in materialization.metadata.items()}
        sent = len(server.requests)
    return {
        "mode": mode.name,
        "images": images,
        "requests_per_image": round(sent / images, 2),
        "paid_calls_per_image": round(mode.paid / images, 2),
        "partition_seconds": round(seconds, 1),
        "run": "success" if result.success else "failed (one line)",
        "captioned": int(captions.get("computed", 0) or 0),
        "failed": int(captions.get("failed", 0) or 0),
        "deferred": int(captions.get("deferred", 0) or 0),
    }


def build_source(settings: Settings):
    from dam_pipeline import components

    return components.open_source(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:  # models loaded once, outside the figures
        measure(FaultMode("warm-up", lambda n, a: (200, chat_completion(GOOD), {})), 2, Path(tmp))
    for mode in modes():
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(mode, args.images, Path(tmp)))
        print(json.dumps(rows[-1]), flush=True)
    out = {"images": args.images, "llm_timeout": TIMEOUT, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
