"""Search while something ingests: `dam serve` answering `GET /api/search` on the default
profile, idle and while `dam ingest` (another process) writes a new prefix into the same
Chroma folder; and how soon the new photos are searchable after their partition's
vector_index step ends.

    python -m bench.live_library --photos 120 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bench.library import make_camera_library

BIN = Path(sys.executable).parent
SIZE = (1600, 1200)
QUERY = {"q": "a cat on a sofa", "prefix": "old"}


def _get(base: str, params: dict) -> tuple[int, dict]:
    url = f"{base}/api/search?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, {}
    except OSError:
        return 0, {}  # not listening yet


def _latencies(
    base: str, seconds: float | None = None, until=None, once: bool = False
) -> tuple[list[float], dict]:
    times: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + (seconds or 1e9)
    while time.monotonic() < deadline and (until is None or until()):
        if once and times:
            break
        started = time.perf_counter()
        status, _ = _get(base, QUERY)
        times.append((time.perf_counter() - started) * 1000)
        statuses[status] = statuses.get(status, 0) + 1
    return times, statuses


def _summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "requests": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
    }


def measure(work: Path, photos: int) -> dict:
    import dagster as dg

    data, library = work / "data", work / "data" / "library"
    make_camera_library(library / "old", photos, size=SIZE)
    env = {**os.environ, "DAM_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    subprocess.run([BIN / "dam", "ingest", "-q"], env=env, check=True, capture_output=True)
    make_camera_library(library / "new", photos, size=SIZE)
    with socket_port() as port:
        serve = subprocess.Popen(
            [BIN / "dam", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        while _get(base, {"q": "x"})[0] not in (200, 400):
            time.sleep(0.2)  # starting
        _latencies(base, 5)  # warm: the embedding model loads on the first query
        idle, _ = _latencies(base, 20)
        writer = subprocess.Popen(
            [BIN / "dam", "ingest", "-q", "--prefix", "new"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        during: list[float] = []
        statuses: dict[int, int] = {}
        found_at = None
        while writer.poll() is None or found_at is None:
            if writer.poll() is None:
                times, seen = _latencies(base, until=lambda: True, once=True)
                during += times
                for status, count in seen.items():
                    statuses[status] = statuses.get(status, 0) + count
            if found_at is None:
                status, hits = _get(base, {"q": "a cat", "prefix": "new"})
                if status == 200 and hits.get("hits"):
                    found_at = time.time()
        instance = dg.DagsterInstance.from_config(str(data / "dagster_home"))
        (run,) = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": "new"}), limit=1)
        ends = [
            r.timestamp
            for r in instance.get_records_for_run(
                run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS
            ).records
            if r.event_log_entry.step_key == "vector_index"
        ]
        return {
            "photos_per_prefix": photos,
            "idle": _summary(idle),
            "during_ingest": {**_summary(during), "statuses": statuses},
            # negative: searchable before the step ended (its commit is inside the step)
            "searchable_after_step_end_seconds": round(found_at - ends[0], 2),
        }
    finally:
        serve.terminate()
        serve.wait(timeout=30)


class socket_port:
    """A free port on 127.0.0.1."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *_: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp), args.photos)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
