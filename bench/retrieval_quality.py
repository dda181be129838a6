"""Text→image retrieval quality on a captioned photo set (the ``captions.jsonl`` format).

    python -m bench.retrieval_quality --eval-set ../shared/eval/coco_dev

Indexes the photos through the real pipeline (Dagster ``ingest_job`` on a temporary data
directory), queries with each photo's first human caption, and reports recall@1/5/10 and
mean reciprocal rank of the right photo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dam_pipeline import components

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dagster as dg
from tqdm import tqdm

from dam_pipeline.api import search
from dam_pipeline.definitions import build_definitions
from dam_pipeline.defs.instance import register_prefixes
from dam_pipeline.settings import Settings

DEFAULT_EVAL_SET = Path(__file__).resolve().parent.parent.parent / "shared" / "eval" / "coco_dev"
EVAL_PREFIX = "eval"


def load_eval_set(folder: Path) -> list[dict]:
    rows = [
        json.loads(line) for line in (folder / "captions.jsonl").read_text().splitlines() if line
    ]
    return [row for row in rows if (folder / "images" / row["file"]).exists()]


def index_eval_set(folder: Path, rows: list[dict], settings: Settings) -> dict:
    """Copy the photos into the library and run ingest_job on them; returns the summary."""
    library = Path(settings.source) / EVAL_PREFIX
    library.mkdir(parents=True, exist_ok=True)
    for row in rows:
        shutil.copyfile(folder / "images" / row["file"], library / row["file"])
    with dg.instance_for_test() as instance:
        register_prefixes(instance, components.open_source(settings))
        result = (
            build_definitions(settings)
            .resolve_job_def("ingest_job")
            .execute_in_process(
                partition_key=EVAL_PREFIX,
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        )
        (materialization,) = result.asset_materializations_for_node("vector_index")
        return {
            k: v.value
            for k, v in materialization.metadata.items()
            if k in ("indexed", "quarantined")
        }


def rank_metrics(ranks: list[int | None]) -> dict:
    """recall@k and MRR from the 1-based rank of the right image (None: not retrieved)."""
    n = max(1, len(ranks))
    found = [r for r in ranks if r is not None]
    return {
        "queries": len(ranks),
        "recall@1": round(sum(r <= 1 for r in found) / n, 4),
        "recall@5": round(sum(r <= 5 for r in found) / n, 4),
        "recall@10": round(sum(r <= 10 for r in found) / n, 4),
        "mrr": round(sum(1 / r for r in found) / n, 4),
    }


def evaluate(
    rows: list[dict], ranker: Callable[[str], list[str]], description: str = "querying"
) -> dict:
    ranks = []
    for row in tqdm(rows, desc=description, unit="query", leave=False):
        ranked = ranker(row["captions"][0])
        target = f"{EVAL_PREFIX}/{row['file']}"
        ranks.append(ranked.index(target) + 1 if target in ranked else None)
    return rank_metrics(ranks)


def ranker(settings: Settings, depth: int, mode: str) -> Callable[[str], list[str]]:
    return lambda question: [
        hit.key
        for hit in search(question, top_k=depth, settings=settings, mode=mode, min_score=-1.0)
    ]


def half_of(row: dict) -> str:
    """The fixed split: even image ids tune, odd ids report (never tuned on)."""
    return "tuning" if int(row.get("image_id", 0)) % 2 == 0 else "report"


KEEP_SHARE = 0.95
"""The default minimum score keeps this share of the right photos on the tuning half."""


def calibrate(rows: list[dict], settings: Settings) -> dict:
    """Dense search per half (ranked among that half's photos): recall and MRR, and the
    minimum score that keeps ``KEEP_SHARE`` of the right photos on the tuning half, with what
    it does on the report half (right photos kept, wrong photos still shown per query)."""
    halves: dict[str, dict] = {}
    for name in ("tuning", "report"):
        members = [row for row in rows if half_of(row) == name]
        keys = {f"{EVAL_PREFIX}/{row['file']}" for row in members}
        ranks, right, wrong = [], [], []
        for row in tqdm(members, desc=f"scores ({name})", unit="query", leave=False):
            hits = search(
                row["captions"][0],
                top_k=len(rows),
                settings=settings,
                mode="dense",
                min_score=-1.0,
            )
            ranked = [hit for hit in hits if hit.key in keys]
            target = f"{EVAL_PREFIX}/{row['file']}"
            order = [hit.key for hit in ranked]
            ranks.append(order.index(target) + 1 if target in order else None)
            right += [hit.score for hit in ranked if hit.key == target]
            wrong.append([hit.score for hit in ranked if hit.key != target])
        halves[name] = {"metrics": rank_metrics(ranks), "right": right, "wrong": wrong}
    tuning = sorted(halves["tuning"]["right"])
    threshold = round(tuning[int((1 - KEEP_SHARE) * len(tuning))], 2) if tuning else 0.0
    out: dict = {"keep_share": KEEP_SHARE, "min_score": threshold}
    for name, half in halves.items():
        kept = sum(score >= threshold for score in half["right"]) / max(1, len(half["right"]))
        shown = sum(sum(s >= threshold for s in scores) for scores in half["wrong"])
        out[name] = {
            **half["metrics"],
            "right_photos_kept": round(kept, 3),
            "wrong_photos_shown_per_query": round(shown / max(1, len(half["wrong"])), 1),
        }
    return out


def run(eval_set: Path, captioner: str = "local", data_dir: Path | None = None) -> dict:
    rows = load_eval_set(eval_set)
    with tempfile.TemporaryDirectory() as tmp:
        root = data_dir or Path(tmp)
        settings = Settings.from_env().replace(
            data_dir=root,
            source=str(root / "library"),
            chroma_path=root / "chroma",
            captioner=captioner,
        )
        indexed = index_eval_set(eval_set, rows, settings)
        modes = {
            mode: evaluate(rows, ranker(settings, len(rows), mode), mode)
            for mode in ("dense", "keyword", "hybrid")
        }
        halves = calibrate(rows, settings)
    return {
        "eval_set": str(eval_set),
        "images": len(rows),
        "captioner": captioner,
        **indexed,
        "modes": modes,
        "halves": halves,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-set", type=Path, default=DEFAULT_EVAL_SET)
    parser.add_argument("--captioner", default="local")
    parser.add_argument("--json", type=Path, help="write the result here too")
    args = parser.parse_args()
    if not (args.eval_set / "captions.jsonl").exists():
        parser.error(f"{args.eval_set} has no captions.jsonl")
    result = json.dumps(run(args.eval_set, args.captioner), indent=2)
    if args.json:
        args.json.write_text(result)
    print(result)


if __name__ == "__main__":
    main()
