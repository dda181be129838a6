"""How well place names in questions are recognised (``retrieval/place_filter.py``), on a
small labelled set (``bench/data/place_questions.json``): precision and recall of the places
found, and questions fully right, on the even-id half and the odd-id half.

    python -m bench.place_questions --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dam_pipeline.retrieval.place_filter import places_in_question

QUESTIONS = Path(__file__).resolve().parent / "data" / "place_questions.json"


def score(questions: list[dict], cities: list[str], areas: list[str]) -> dict:
    found_total = wanted_total = right = exact = 0
    mistakes = []
    for item in questions:
        found, _ = places_in_question(item["q"], cities, areas)
        wanted = set(item["places"])
        found_total += len(found)
        wanted_total += len(wanted)
        right += len(set(found) & wanted)
        if set(found) == wanted:
            exact += 1
        else:
            mistakes.append({"q": item["q"], "found": found, "wanted": sorted(wanted)})
    return {
        "questions": len(questions),
        "precision": round(right / found_total, 3) if found_total else None,
        "recall": round(right / wanted_total, 3) if wanted_total else None,
        "questions_right": exact,
        "mistakes": mistakes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    data = json.loads(QUESTIONS.read_text())
    cities, areas = data["library"]["cities"], data["library"]["areas"]
    halves = {
        "tuning (even ids)": [q for q in data["questions"] if q["id"] % 2 == 0],
        "report (odd ids)": [q for q in data["questions"] if q["id"] % 2 == 1],
    }
    result = {name: score(qs, cities, areas) for name, qs in halves.items()}
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
