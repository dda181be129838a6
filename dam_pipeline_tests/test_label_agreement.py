"""Scoring a question against the classifier's labels (ConSE-style), with the real embedder."""

from __future__ import annotations

from dam_pipeline.captioning import build_captioner
from dam_pipeline.embedding import build_embedder
from dam_pipeline.retrieval.label_agreement import agreements, labels_metadata, rerank
from dam_pipeline_tests.conftest import photo


def _metadata(name: str) -> dict:
    (caption,) = build_captioner("local").caption_batch([photo(name)])
    # the same bland caption for every photo: only what the classifier saw can tell them apart
    return {"caption": "A photo.", "labels": labels_metadata(caption.labels)}


def test_a_one_word_query_ranks_the_obvious_photo_first() -> None:
    embedder = build_embedder()
    candidates = {name: (0.3, _metadata(name)) for name in ("coffee", "rocket", "chelsea")}
    obvious = {"kitten": "chelsea", "espresso": "coffee", "spaceflight": "rocket"}
    for word, expected in obvious.items():
        assert rerank(candidates, embedder.embed_query(word), embedder)[0][0] == expected, word


def test_caption_similarity_still_leads_and_unlabelled_hits_are_kept() -> None:
    embedder = build_embedder()
    query = embedder.embed_query("a cup of coffee")
    candidates = {
        "cat, better caption": (0.6, _metadata("chelsea")),
        "coffee": (0.3, _metadata("coffee")),
        "no labels": (0.45, {"caption": "A photo of a cup of coffee."}),
    }
    ranked = rerank(candidates, query, embedder)
    assert [vid for vid, _, _ in ranked] == ["cat, better caption", "no labels", "coffee"]
    relevance = [fused for _, fused, _ in ranked]
    assert relevance == sorted(relevance, reverse=True)  # the figure is the order
    assert ranked[1][2] is None  # no labels: no agreement, the caption alone
    agreement = agreements(query, [m for _, m in candidates.values()], embedder)
    assert agreement[2] is None and agreement[1] > agreement[0]
    assert [vid for vid, _, _ in rerank(candidates, query, embedder, weight=0)] == list(candidates)
