""" "More like this": does an edited copy find its original first?

    python -m bench.similar_quality [--eval-set ../shared/eval/coco_dev] [--json OUT]

Pairs built from the photos of a captioned set: each photo's copy cropped to its middle,
cropped off-centre, cut to one corner, mirrored, darkened, made grey, turned 8 degrees, and
shrunk then re-encoded at JPEG quality 30. Each copy asks "more like this" of a library
holding every original and every other photo's copies (its own copies are left out): its
original must come first. Two ways of asking are compared on the same pairs:

- ``caption``: what ``similar`` did before visual vectors: the copy is captioned by the
  local captioner and its caption embedded, ranked against the library's caption vectors;
- ``visual``: the visual vector (``dam_pipeline.embedding.visual``).

The visual recipe (mean of the classifier's four views, square root, L2) was fixed before
this was first run and not tuned since; queries from the even-id half and from the odd-id
half are reported apart all the same.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.retrieval_quality import DEFAULT_EVAL_SET, half_of, load_eval_set
from dam_pipeline import components
from dam_pipeline.embedding.visual import ClassifierFeatures
from dam_pipeline.settings import Settings


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def edited_copies(image: Image.Image) -> dict[str, Image.Image]:
    """Copies a person makes of one photo: cropped, mirrored, darker, grey, turned,
    shrunk and re-encoded."""
    w, h = image.size
    shrunk = image.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BILINEAR)
    middle = (int(w * 0.15), int(h * 0.15), int(w * 0.85), int(h * 0.85))
    return {
        "centre crop (70%)": image.crop(middle),
        "off-centre crop (75%)": image.crop((0, int(h * 0.1), int(w * 0.75), h)),
        "one corner (50% x 50%)": image.crop((w // 2, h // 2, w, h)),
        "mirrored": ImageOps.mirror(image),
        "darker": ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(0.6)).enhance(0.8),
        "grey": ImageOps.grayscale(image).convert("RGB"),
        "turned 8 degrees": image.rotate(8, resample=Image.Resampling.BICUBIC, expand=True),
        "half size, JPEG q30": Image.open(io.BytesIO(_jpeg(shrunk, 30))).convert("RGB"),
    }


def ranks(
    query: np.ndarray, library: np.ndarray, owner: np.ndarray, photo: int, originals: int
) -> int:
    """1-based rank of original ``photo`` for one query among the library's rows, leaving out
    the query photo's own copies (rows past ``originals`` whose owner is ``photo``)."""
    scores = library @ query
    keep = np.ones(len(library), bool)
    keep[originals:] = owner[originals:] != photo
    return int((scores[keep] > scores[photo]).sum()) + 1


def duplicate_threshold(
    vectors: np.ndarray, owner: np.ndarray, rows: list[dict], kinds: list[str]
) -> dict:
    """Near duplicates by looks: the visual similarity above which two images are one
    picture. Chosen on the even-id half as just above the most similar pair of two different
    photos there (no false pair); the odd half reports which copies it joins to their
    original and how many pairs of different photos it wrongly joins."""
    originals = len(rows)
    similarity = vectors @ vectors.T
    different = owner[:, None] != owner[None, :]
    half = np.array([half_of(rows[o]) for o in owner])
    tuning = (half[:, None] == "tuning") & (half[None, :] == "tuning")
    report = (half[:, None] == "report") & (half[None, :] == "report")
    threshold = round(float(similarity[different & tuning].max()) + 0.005, 3)
    joined = {}
    for k, kind in enumerate(kinds):
        found = [
            similarity[originals + i * len(kinds) + k, i] >= threshold
            for i in range(originals)
            if half_of(rows[i]) == "report"
        ]
        joined[kind] = round(float(np.mean(found)), 3)
    return {
        "threshold": threshold,
        "report_copies_joined_by_kind": joined,
        "report_false_pairs": int((similarity[different & report] >= threshold).sum() // 2),
        "report_pairs_of_different_photos": int((different & report).sum() // 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--eval-set", type=Path, default=DEFAULT_EVAL_SET)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = load_eval_set(args.eval_set)
    settings = Settings(captioner="local", embedder="sentence-transformers")
    captioner = components.build_captioner(settings)
    embedder = components.build_embedder(settings)
    visual = ClassifierFeatures()
    originals = [Image.open(args.eval_set / "images" / r["file"]).convert("RGB") for r in rows]
    copies = [edited_copies(image) for image in originals]
    kinds = list(copies[0])
    flat = [c[k] for c in copies for k in kinds]
    owner = np.array([*range(len(rows)), *(i for i in range(len(rows)) for _ in kinds)])

    def caption_vectors(images: list[Image.Image]) -> np.ndarray:
        texts = [c.text for batch in range(0, len(images), 16)
                 for c in captioner.caption_batch(images[batch : batch + 16])]  # fmt: skip
        return embedder.embed_documents(texts)

    def visual_vectors(images: list[Image.Image]) -> np.ndarray:
        return visual.embed_images([_jpeg(image) for image in images])

    library = {
        "caption": caption_vectors([*originals, *flat]),
        "visual": visual_vectors([*originals, *flat]),
    }
    result: dict = {
        "eval_set": str(args.eval_set),
        "photos": len(rows),
        "library_images": len(owner),
        "kinds": kinds,
        "halves": {},
    }
    for half in ("tuning", "report"):
        chosen = [i for i, r in enumerate(rows) if half_of(r) == half]
        by_kind: dict[str, dict] = {}
        for k, kind in enumerate(kinds):
            by_kind[kind] = {}
            for way, vectors in library.items():
                found = [
                    ranks(vectors[len(rows) + i * len(kinds) + k], vectors, owner, i, len(rows))
                    for i in chosen
                ]
                by_kind[kind][way] = {
                    "first": round(float(np.mean([r == 1 for r in found])), 3),
                    "mrr": round(float(np.mean([1 / r for r in found])), 3),
                }
        overall = {
            way: {
                m: round(float(np.mean([v[way][m] for v in by_kind.values()])), 3)
                for m in ("first", "mrr")
            }
            for way in library
        }
        result["halves"][half] = {
            "photos": len(chosen),
            "by_kind": by_kind,
            "overall": overall,
        }
        print(half, len(chosen), "photos:", json.dumps(overall))
    result["duplicates_by_looks"] = duplicate_threshold(library["visual"], owner, rows, kinds)
    print("duplicates by looks:", json.dumps(result["duplicates_by_looks"]))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
