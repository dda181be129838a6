"""Peak memory while ingesting very large images that have no reduced-size decode (PNG,
TIFF), with 2 and with 4 decoding workers: the decode budget, not the worker count, bounds
it. Each run is a separate `bench.ingest` process so its peak RSS is its own.

    python -m bench.large_images --side 9000 --png 4 --tiff 2 --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PROJECT = Path(__file__).resolve().parent.parent


def make_large_library(root: Path, side: int, png: int, tiff: int) -> list[Path]:
    """Photo-like large images: smooth gradients with grain (so PNG cannot cheat with
    runs of one colour), written once and reused."""
    folder = root / "large"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    rng = np.random.default_rng(0)
    for index in range(png + tiff):
        path = folder / (f"big{index}.png" if index < png else f"big{index}.tif")
        if not path.exists():
            ramp = np.linspace(0, 255, side, dtype=np.float32)
            image = np.empty((side, side, 3), dtype=np.uint8)
            for channel in range(3):
                grain = rng.integers(0, 24, size=(side, side), dtype=np.uint8)
                base = (ramp[None, :] * (channel + 1) / 3 + ramp[:, None] / 3 + index * 17) % 232
                image[..., channel] = base.astype(np.uint8) + grain
            Image.fromarray(image).save(path, compress_level=1)
            del image
        made.append(path)
    return made


def measure(library: Path, work: Path, workers: int) -> dict:
    data = work / f"data-{workers}"
    out = work / f"ingest-{workers}.json"
    env = {**os.environ, "DAM_WORKERS": str(workers), "PYTHONPATH": str(PROJECT)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ingest",
            "--library",
            str(library),
            "--data",
            str(data),
            "--json",
            str(out),
        ],
        check=True,
        cwd=PROJECT,
        env=env,
    )
    result = json.loads(out.read_text())
    return {
        "workers": workers,
        "peak_rss_mb": result["peak_rss_mb"],
        "indexed": result["indexed"],
        "seconds": result["first_run_seconds"],
    }


def run(side: int, png: int, tiff: int, work: Path) -> dict:
    library = work / "library"
    images = make_large_library(library, side, png, tiff)
    return {
        "images": len(images),
        "megapixels_each": round(side * side / 1e6, 1),
        "formats": {"png": png, "tiff": tiff},
        "runs": [measure(library, work, workers) for workers in (2, 4)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=9000)
    parser.add_argument("--png", type=int, default=4)
    parser.add_argument("--tiff", type=int, default=2)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(run(args.side, args.png, args.tiff, work), indent=2))


if __name__ == "__main__":
    main()
