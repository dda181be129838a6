"""Video ingest: seconds of video indexed per second at 1080p, and the peak memory while a
long 4K clip is indexed. Each clip is ingested by a separate `bench.ingest` process (its
peak RSS is its own), end to end: decode, shots, keyframes, captions, embeddings, index.

Clips are written here with PyAV: shots of real photos that pan slowly (every frame
differs, as in footage, so the decoder does real work), 4 s a shot, H.264.

    python -m bench.videos --hd-seconds 120 --uhd-seconds 120 --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dam_pipeline.demo import skimage_data_dir

PROJECT = Path(__file__).resolve().parent.parent
PHOTOS = ("coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png")
SHOT_SECONDS = 4
PAN = 0.2
"""Share of the picture the camera pans across during a shot."""


def write_panning_clip(path: Path, seconds: int, size: tuple[int, int], fps: int) -> Path:
    """H.264 shots of the demo photos, each panning across its photo."""
    import av

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    wide = (round(width * (1 + PAN)), height)
    stills = [
        np.asarray(Image.open(skimage_data_dir() / name).convert("RGB").resize(wide))
        for name in PHOTOS
    ]
    partial = path.with_name(f".{path.name}.partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        per_shot = SHOT_SECONDS * fps
        for index in range(seconds * fps):
            still = stills[(index // per_shot) % len(stills)]
            offset = round((wide[0] - width) * (index % per_shot) / per_shot)
            pixels = np.ascontiguousarray(still[:, offset : offset + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)
    return path


def ingest(clip: Path, work: Path, name: str) -> dict:
    """`bench.ingest` on a library that holds only ``clip``."""
    library = work / f"library-{name}"
    (library / "clips").mkdir(parents=True, exist_ok=True)
    target = library / "clips" / clip.name
    if not target.exists():
        os.link(clip, target)
    out = work / f"{name}.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "HF_HUB_OFFLINE": "1"}
    data = work / f"data-{name}"
    command = ["bench.ingest", "--library", str(library), "--data", str(data), "--json", str(out)]
    subprocess.run(
        [sys.executable, "-m", *command],
        check=True,
        cwd=PROJECT,
        env=env,
    )
    return json.loads(out.read_text())


def measure(seconds: int, size: tuple[int, int], fps: int, work: Path, name: str) -> dict:
    started = time.perf_counter()
    clip = write_panning_clip(work / f"{name}-{seconds}s.mp4", seconds, size, fps)
    written = time.perf_counter() - started
    result = ingest(clip, work, name)
    decoding = result["stage_seconds"]["normalize"] or 0.0
    return {
        "resolution": f"{size[0]}x{size[1]}",
        "fps": fps,
        "video_seconds": seconds,
        "file_mb": round(clip.stat().st_size / 2**20, 1),
        "shots_indexed": result["indexed"],
        "seconds_end_to_end": result["first_run_seconds"],
        "video_seconds_per_second": round(seconds / result["first_run_seconds"], 2),
        "seconds_decoding": decoding,
        "decode_video_seconds_per_second": round(seconds / decoding, 2) if decoding else None,
        "peak_rss_mb": result["peak_rss_mb"],
        "rerun_seconds": result["rerun_seconds"],
        "seconds_writing_clip": round(written, 1),
    }


def run(hd_seconds: int, uhd_seconds: int, work: Path) -> dict:
    result = {"hd": measure(hd_seconds, (1920, 1080), 30, work, "hd")}
    if uhd_seconds:
        result["uhd"] = measure(uhd_seconds, (3840, 2160), 24, work, "uhd")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hd-seconds", type=int, default=120)
    parser.add_argument("--uhd-seconds", type=int, default=120)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = run(args.hd_seconds, args.uhd_seconds, work)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
