"""The benchmark runs end to end on a handful of photos and writes results of the right
shape (no timing is asserted: speed is measured by `make bench`, not tested)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dam_pipeline
from dam_pipeline_tests.conftest import jpeg_bytes, photo

PROJECT = Path(dam_pipeline.__file__).resolve().parent.parent


def test_quick_bench_writes_results(tmp_path: Path) -> None:
    eval_set = tmp_path / "eval"
    (eval_set / "images").mkdir(parents=True)
    rows = []
    for name, caption in (
        ("chelsea", "a cat lying down"),
        ("coffee", "a cup of coffee"),
        ("rocket", "a rocket"),
    ):
        (eval_set / "images" / f"{name}.jpg").write_bytes(jpeg_bytes(photo(name)))
        rows.append(json.dumps({"file": f"{name}.jpg", "captions": [caption]}))
    (eval_set / "captions.jsonl").write_text("\n".join(rows) + "\n")

    out = tmp_path / "results"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--images",
            "3",
            "--naive",
            "2",
            "--sizes",
            "200",
            "--eval-set",
            str(eval_set),
            "--out",
            str(out),
            "--no-readme",
            "--same-process",
            "--large-side",
            "0",  # the large-image memory bench needs minutes; make bench runs it
            "--partitions",
            "0",  # so does the daemon bench
            "--live-photos",
            "0",  # and the live-library bench (dam serve while dam ingest writes)
            "--video-seconds",
            "0",  # and the video bench (a 4K clip written and indexed)
            "--rerank-repeats",
            "0",  # and the re-ranking latency (a server answering in 0.3 s, 9 times)
            "--fault-images",
            "0",  # and the provider faults (12 partitions through Dagster)
        ],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    (result_file,) = out.glob("*-quick.json")
    result = json.loads(result_file.read_text())
    assert result["ingest"]["images"] == 3 and result["ingest"]["indexed"] == 3
    assert result["ingest"]["rerun_model_calls"] == {
        "captions_computed": 0,
        "embeddings_computed": 0,
    }
    assert result["ingest"]["images_per_second"] > 0 and result["ingest"]["peak_rss_mb"] > 0
    assert result["limit"]["images"] == 3 and result["naive"]["images"] == 2
    assert set(result["ratios"]) == {"vs_limit", "vs_limit_range", "vs_naive", "cpu_ceiling"}
    assert result["ratios"]["cpu_ceiling"] > 0  # the limit's CPU per image over the ingest's
    runs = [run["images_per_second"] for run in result["limit"]["runs"]]
    assert len(runs) == 2  # measured before and after the ingest
    assert result["limit"]["images_per_second"] == pytest.approx(sum(runs) / 2, abs=0.01)
    low, high = result["ratios"]["vs_limit_range"]
    assert low <= result["ratios"]["vs_limit"] <= high
    assert result["query_latency"][0]["vectors"] == 200
    assert {"p50_ms", "p95_ms", "http_p50_ms", "http_p95_ms"} <= set(result["query_latency"][0])
    quality = result["retrieval_quality"]["modes"]["dense"]
    assert quality["queries"] == 3 and 0 <= quality["recall@1"] <= quality["recall@5"] <= 1
    halves = result["retrieval_quality"]["halves"]
    assert halves["tuning"]["queries"] + halves["report"]["queries"] == 3
    assert result["machine"]["cores"] >= 1
    table = (out / result_file.name.replace(".json", ".md")).read_text()
    assert "end to end / limit" in table and "R@1" in table
