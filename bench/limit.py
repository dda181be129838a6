"""What ingest is measured against, on the same photos:

- the limit: decoding plus the captioning models alone (the classifier's forward pass and
  the people detectors), batched (no hashing, no normalized copy, no embedding, no index),
  which no pipeline around it can beat; with ``--faces`` the face models too;
- the naive loop: what the seed designs do, one image at a time through every stage, with
  a full-resolution decode and one upsert per image.

    python -m bench.limit --library DIR --json OUT [--naive N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PIL import Image
from tqdm import tqdm

from dam_pipeline.captioning import LocalCaptioner
from dam_pipeline.captioning.local import RESIZE_SHORT_SIDE
from dam_pipeline.embedding import build_embedder
from dam_pipeline.faces.describe import MIN_FACE_PIXELS, DlibFaceDescriber
from dam_pipeline.vector_stores import ChromaVectorStore, VectorRecord

BATCH = 16
NORMALIZED_SIDE = 1024
"""The normalized images' longest side, on which the faces stage works."""


def _decode_small(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.draft("RGB", (RESIZE_SHORT_SIDE, RESIZE_SHORT_SIDE))
        return image.convert("RGB")


def measure_limit(
    paths: list[Path], captioner: LocalCaptioner, faces: DlibFaceDescriber | None = None
) -> dict:
    """``faces``: the face models too (the ingest runs them when ``DAM_FACES`` is on), on
    the same small decode, with the smallest face scaled to it."""
    captioner.model_outputs([_decode_small(paths[0])])  # load and warm the models
    if faces is not None:
        faces.load()
    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(2) as pool:
        for offset in tqdm(range(0, len(paths), BATCH), desc="limit", unit="batch", leave=False):
            images = list(pool.map(_decode_small, paths[offset : offset + BATCH]))
            captioner.model_outputs(images)
            for image in images if faces is not None else ():
                faces.min_face_pixels = MIN_FACE_PIXELS * max(image.size) / NORMALIZED_SIDE
                faces.faces(image)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return {
        "images": len(paths),
        "seconds": round(seconds, 2),
        "images_per_second": round(len(paths) / seconds, 2),
        "cpu_ms_per_image": round(cpu_seconds / len(paths) * 1000, 1),
        "cores_busy": round(cpu_seconds / seconds, 2),
    }


def measure_naive(paths: list[Path], captioner: LocalCaptioner) -> dict:
    embedder = build_embedder()
    embedder.embed_query("warm up")
    with tempfile.TemporaryDirectory() as tmp:
        store = ChromaVectorStore("naive", path=Path(tmp))
        start = time.perf_counter()
        for index, path in enumerate(tqdm(paths, desc="naive loop", unit="img", leave=False)):
            with Image.open(path) as image:
                full = image.convert("RGB")  # full resolution, as the seed designs decode
            (caption,) = captioner.caption_batch([full])
            vector = embedder.embed_documents([caption.text])[0]
            store.upsert(
                [
                    VectorRecord(
                        str(index), vector, caption.text, {"partition": "p", "key": path.name}
                    )
                ]
            )
        seconds = time.perf_counter() - start
    return {
        "images": len(paths),
        "seconds": round(seconds, 2),
        "images_per_second": round(len(paths) / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", type=Path, required=True)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument(
        "--naive", type=int, default=20, help="images for the naive loop (0: limit only)"
    )
    parser.add_argument("--faces", action="store_true", help="the face models too")
    args = parser.parse_args()
    paths = sorted(args.library.rglob("*.jpg"))
    captioner = LocalCaptioner(ocr="auto")
    faces = DlibFaceDescriber() if args.faces else None
    result = {"limit": measure_limit(paths, captioner, faces)}
    result["limit"]["faces"] = args.faces
    if args.naive:
        result["naive"] = measure_naive(paths[: args.naive], captioner)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
