"""How well place names in questions are recognised (``retrieval/place_filter.py``), on a
small labelled set (``bench/data/place_questions.json``): precision and recall of the places
found, and questions fully right, on the even-id half and the odd-id half. And what a
photo's position costs: reading it from the EXIF of a JPEG, and naming its place.

    python -m bench.place_questions --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

from dam_pipeline.places.gazetteer import GeoNamesGazetteer
from dam_pipeline.places.position import gps_position
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


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    value = abs(value)
    degrees, minutes = int(value), int(abs(value) % 1 * 60)
    seconds = Fraction(round((value - degrees - minutes / 60) * 360000), 100)
    return Fraction(degrees), Fraction(minutes), seconds


def position_cost(photos: int = 300, seed: int = 4) -> dict:
    """Milliseconds a photo: reading the GPS block of a 640 px JPEG (Pillow's EXIF, as
    ``imaging.normalize`` reads it) and naming the place of the position; positions
    uniform over the inhabited latitudes."""
    rng = np.random.default_rng(seed)
    positions = np.column_stack([rng.uniform(-45, 65, photos), rng.uniform(-180, 180, photos)])
    files = []
    for lat, lon in positions:
        exif = Image.Exif()
        exif[ExifTags.IFD.GPSInfo] = {
            1: "N" if lat >= 0 else "S", 2: _dms(lat), 3: "E" if lon >= 0 else "W", 4: _dms(lon),
        }  # fmt: skip
        out = io.BytesIO()
        Image.new("RGB", (640, 480), (90, 120, 150)).save(out, format="JPEG", exif=exif)
        files.append(out.getvalue())
    start = time.perf_counter()
    read = []
    for data in files:
        with Image.open(io.BytesIO(data)) as image:
            read.append(gps_position(image.getexif().get_ifd(ExifTags.IFD.GPSInfo)))
    reading = time.perf_counter() - start
    gazetteer = GeoNamesGazetteer()
    start = time.perf_counter()
    gazetteer.place(0.0, 0.0)
    loading = time.perf_counter() - start
    start = time.perf_counter()
    named = [gazetteer.place(p["lat"], p["lon"]) for p in read if p]
    naming = time.perf_counter() - start
    return {
        "photos": photos,
        "positions_read": sum(1 for p in read if p),
        "places_named": sum(1 for p in named if p),
        "ms_reading_a_position": round(reading / photos * 1000, 3),
        "ms_naming_a_place": round(naming / max(1, len(named)) * 1000, 3),
        "seconds_loading_the_gazetteer": round(loading, 2),
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
    result["position_cost"] = position_cost()
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
