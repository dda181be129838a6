"""The decode budget: workers together never hold more than it, and a decode larger than
the whole budget runs alone instead of failing."""

from __future__ import annotations

import io
import threading
import time

from PIL import Image

from dam_pipeline.imaging import HEADER_BYTES, DecodeBudget, decode_cost
from dam_pipeline.imaging.budget import BYTES_PER_PIXEL
from dam_pipeline_tests.conftest import jpeg_bytes


def test_workers_never_hold_more_than_the_budget_and_big_ones_run_alone() -> None:
    budget = DecodeBudget(100)
    alone: list[bool] = []

    def decode(cost: int) -> None:
        with budget.reserve(cost):
            if cost >= 100:
                alone.append(budget.in_use == 100)
            time.sleep(0.02)

    threads = [threading.Thread(target=decode, args=(c,)) for c in (40, 40, 40, 500, 30, 60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert budget.peak <= 100 and budget.in_use == 0
    assert alone == [True]


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "grey").save(out, format="PNG")
    return out.getvalue()


def test_the_cost_comes_from_the_header_and_the_jpeg_reduction() -> None:
    png = _png(4000, 3000)
    head = png[:HEADER_BYTES]
    assert decode_cost(head, 1024, len(png)) == 4000 * 3000 * BYTES_PER_PIXEL + len(png)
    jpeg = jpeg_bytes(Image.new("RGB", (4000, 3000), "grey"))
    # a 4000 px JPEG decodes at 1/4 scale for a 1024 px result: 1000 x 750 pixels
    assert decode_cost(jpeg[:HEADER_BYTES], 1024, len(jpeg)) == (
        1000 * 750 * BYTES_PER_PIXEL + len(jpeg)
    )
    assert decode_cost(b"not an image", 1024, 12) == 12 * 11
