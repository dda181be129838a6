"""Does an offline second stage help? Exact-word agreement between the question and what the
index holds about each candidate (caption, tags, text read off the image), added to the
first stage's similarity with weight w, tried on coco_dev's halves.

Every photo is queried with all five of its captions, ranked among its half's photos. The
weight is chosen on the tuning half (even image ids); the report half (odd ids) only
reports. The second stage is kept only if it wins on the tuning half and does not lose on
the report half.

    python -m bench.offline_rerank --eval-set ../shared/eval/coco_dev --json OUT
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tqdm import tqdm

from bench.retrieval_quality import (
    DEFAULT_EVAL_SET,
    EVAL_PREFIX,
    half_of,
    index_eval_set,
    load_eval_set,
    rank_metrics,
)
from dam_pipeline.library import Library
from dam_pipeline.reasoning.extractive import content_words
from dam_pipeline.settings import Settings

WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2)


def agreement(question: str, document: str) -> float:
    """Share of the question's content words that the candidate's text holds."""
    asked = content_words(question)
    return len(asked & content_words(document)) / len(asked) if asked else 0.0


def measure(eval_set: Path, work: Path) -> dict:
    rows = load_eval_set(eval_set)
    settings = Settings.from_env().replace(
        data_dir=work, source=str(work / "library"), chroma_path=work / "chroma"
    )
    index_eval_set(eval_set, rows, settings)
    library = Library(settings)
    result: dict = {"images": len(rows), "weights": list(WEIGHTS)}
    for half in ("tuning", "report"):
        members = [row for row in rows if half_of(row) == half]
        keys = {f"{EVAL_PREFIX}/{row['file']}" for row in members}
        ranks: dict[float, list[int | None]] = {w: [] for w in WEIGHTS}
        for row in tqdm(members, desc=half, unit="photo", leave=False):
            target = f"{EVAL_PREFIX}/{row['file']}"
            for question in row["captions"][:5]:
                hits = [
                    h
                    for h in library.search(question, top_k=len(rows), min_score=-1.0)
                    if h.key in keys
                ]
                texts = {h.key: f"{h.caption} {' '.join(h.tags)} {h.text}" for h in hits}
                for weight in WEIGHTS:
                    order = sorted(
                        hits,
                        key=lambda h, w=weight: -(h.score + w * agreement(question, texts[h.key])),
                    )
                    keys_in_order = [h.key for h in order]
                    ranks[weight].append(
                        keys_in_order.index(target) + 1 if target in keys_in_order else None
                    )
        result[half] = {str(w): rank_metrics(r) for w, r in ranks.items()}
    tuning = result["tuning"]
    best = max(WEIGHTS, key=lambda w: (tuning[str(w)]["mrr"], -w))
    result["chosen_on_tuning_half"] = best
    report, base = result["report"][str(best)], result["report"]["0.0"]
    wins = tuning[str(best)]["mrr"] > tuning["0.0"]["mrr"]
    result["kept"] = bool(best > 0 and wins and report["mrr"] >= base["mrr"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-set", type=Path, default=DEFAULT_EVAL_SET)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.eval_set, Path(tmp))
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
