"""Latency the vision re-ranker adds to a search, at N = 10, 20 and 50 candidates: the
thumbnails (read from the object store, 384 px JPEGs) and one request to a local
chat-completions server that answers after a fixed delay (the model's own time is the
provider's; this measures ours around it).

    python -m bench.rerank_latency --latency 0.3 --json OUT
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from dam_pipeline.demo import skimage_data_dir
from dam_pipeline.library import Library
from dam_pipeline.llm_clients import openai_client
from dam_pipeline.reranking import VisionReranker
from dam_pipeline.settings import Settings
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion


def _server(latency: float) -> ScriptedHTTPServer:
    def answer(method, path, body):
        time.sleep(latency)
        content = body["messages"][0]["content"]
        count = sum(1 for part in content if part["type"] == "image_url")
        scores = [{"id": f"C{n}", "relevance": n % 11} for n in range(1, count + 1)]
        return 200, chat_completion(json.dumps({"scores": scores})), {}

    return ScriptedHTTPServer(answer)


def _photos(library: Library, count: int) -> list[str]:
    """Normalized images as the pipeline stores them (1024 px JPEGs of real photos, each a
    little different so that every one is its own object)."""
    names = ("coffee.png", "chelsea.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png")
    stills = [Image.open(skimage_data_dir() / n).convert("RGB") for n in names]
    digests = []
    for index in range(count):
        still = stills[index % len(stills)]
        scale = 1024 / max(still.size)
        picture = still.resize((round(still.width * scale), round(still.height * scale)))
        out = io.BytesIO()
        picture.save(out, format="JPEG", quality=95 - index % 47)  # 235 distinct objects
        digests.append(library.objects.put(out.getvalue()))
    return digests


def measure(latency: float, sizes: list[int], repeats: int, work: Path) -> dict:
    library = Library(Settings(data_dir=work / "data"))
    digests = _photos(library, max(sizes))
    rows = []
    with _server(latency) as server:
        client = openai_client(f"{server.url}/v1", "", 60.0)
        reranker = VisionReranker(client, "openai", "bench", cache=None)
        for size in sizes:
            totals, thumbs = [], []
            for repeat in range(repeats):
                started = time.perf_counter()
                candidates = library.rerank_candidates(digests[:size])
                thumbs.append(time.perf_counter() - started)
                result = reranker.rerank(f"question {repeat}", candidates)
                assert not result.error, result.error
                totals.append(time.perf_counter() - started)
            added = statistics.median(totals)
            rows.append(
                {
                    "candidates": size,
                    "added_ms_p50": round(added * 1000, 1),
                    "ours_ms_p50": round((added - latency) * 1000, 1),
                    "thumbnails_ms_p50": round(statistics.median(thumbs) * 1000, 1),
                    "request_kb": round(
                        sum(len(c.jpeg) for c in candidates) * 4 / 3 / 1024, 1
                    ),  # base64
                }
            )
    return {"model_latency_seconds": latency, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.latency, args.sizes, args.repeats, Path(tmp))
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
