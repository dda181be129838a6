"""Scoring a question against what the classifier saw, not only against the caption.

A caption is one sentence the captioner chose; the classifier's other guesses, with their
probabilities, say more. ConSE-style zero-shot scoring (Norouzi et al., 2014): an image's
agreement with a question is the probability-weighted similarity of the question to the
names of the classes the classifier saw in it,

    agreement = Σ p(class | image) · cos(question, "a photo of a <class>") / Σ p

and the dense ranking orders candidates by caption similarity + ``LABEL_WEIGHT`` ×
agreement. The weight was chosen on the tuning half of coco_dev (0.1 among 0–1: MRR 0.684 →
0.697 there, 0.736 → 0.761 on the report half); a hit's score stays the caption's cosine
similarity, which ``DAM_MIN_SCORE`` is calibrated on.

Only captions with scored labels (the local captioner's) take part; other hits keep their
caption similarity. Class names are embedded once per process and embedder.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import numpy as np

from dam_pipeline.embedding import Embedder
from dam_pipeline.vector_stores.base import Metadata

LABEL_WEIGHT = 0.1
LABELS_KEPT = 10
"""The most probable labels of an image kept in the index (metadata ``labels``)."""
TEMPLATE = "a photo of a {}"

_vectors: dict[tuple[str, str], np.ndarray] = {}
_lock = threading.Lock()


def labels_metadata(labels: Sequence[tuple[str, float]]) -> str:
    """The metadata value: the most probable labels with their probabilities, as JSON."""
    best = sorted(labels, key=lambda label: -label[1])[:LABELS_KEPT]
    return json.dumps([[name, round(float(score), 4)] for name, score in best])


def _labels_of(metadata: Metadata) -> list[tuple[str, float]]:
    try:
        labels = json.loads(str(metadata.get("labels") or "[]"))
        return [(str(name), float(score)) for name, score in labels if float(score) > 0]
    except (ValueError, TypeError):
        return []


def _name_vectors(embedder: Embedder, names: list[str]) -> dict[str, np.ndarray]:
    with _lock:
        missing = [n for n in dict.fromkeys(names) if (embedder.fingerprint, n) not in _vectors]
        if missing:
            vectors = embedder.embed_documents([TEMPLATE.format(name) for name in missing])
            for name, vector in zip(missing, vectors, strict=True):
                _vectors[(embedder.fingerprint, name)] = vector
        return {name: _vectors[(embedder.fingerprint, name)] for name in names}


def agreements(
    query_vector: np.ndarray, metadatas: Sequence[Metadata], embedder: Embedder
) -> list[float | None]:
    """Each image's agreement with the question (None: it has no scored labels)."""
    if getattr(embedder, "modality", "text") != "text":
        return [None] * len(metadatas)  # image embeddings: class names are not comparable
    labels = [_labels_of(metadata) for metadata in metadatas]
    vectors = _name_vectors(embedder, [name for found in labels for name, _ in found])
    out: list[float | None] = []
    for found in labels:
        if not found:
            out.append(None)
            continue
        weights = np.array([score for _, score in found])
        similarity = np.array([float(vectors[name] @ query_vector) for name, _ in found])
        out.append(float((weights * similarity).sum() / weights.sum()))
    return out


def rerank(
    candidates: dict[str, tuple[float, Metadata]],
    query_vector: np.ndarray,
    embedder: Embedder,
    weight: float = LABEL_WEIGHT,
) -> list[tuple[str, float, float | None]]:
    """Candidates as (id, relevance, label agreement), best first: relevance is caption
    similarity plus ``weight`` × label agreement (None where the image has no labels)."""
    ids = list(candidates)
    if not ids or weight == 0:
        return [(vid, candidates[vid][0], None) for vid in ids]
    agreement = agreements(query_vector, [candidates[i][1] for i in ids], embedder)
    ranked = [
        (vid, candidates[vid][0] + weight * (extra or 0.0), extra)
        for vid, extra in zip(ids, agreement, strict=True)
    ]
    return sorted(ranked, key=lambda item: -item[1])
