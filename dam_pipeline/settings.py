"""Configuration from the environment, shared by the CLI, the Python API and the Dagster layer.

Every knob has an offline default so that a fresh clone works with no variables set; see
``.env.example`` for the full list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dam_pipeline.captioning import Captioner
    from dam_pipeline.embedding import Embedder
    from dam_pipeline.reasoning import Reasoner
    from dam_pipeline.sources import Source

_PACKAGE_DIR = Path(__file__).resolve().parent


def default_data_dir() -> Path:
    """``<project>/data`` in a source checkout, else a per-user folder."""
    project_root = _PACKAGE_DIR.parent
    if (project_root / "pyproject.toml").exists():
        return project_root / "data"
    return Path.home() / ".local" / "share" / "dam_pipeline"


PROVIDER_KEYS = {"groq": "GROQ_API_KEY", "openai": "OPENAI_API_KEY"}
"""The environment variable holding each remote provider's API key."""


def api_key_for(provider: str) -> str:
    name = PROVIDER_KEYS.get(provider)
    return os.environ.get(name, "") if name else ""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(
            f"{name}={raw!r} is not a whole number; unset it or give e.g. {default}"
        ) from exc


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(
            f"{name}={raw!r} is not a number; unset it or give e.g. {default}"
        ) from exc


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs to know, read once from the environment."""

    data_dir: Path
    source: str
    partition_depth: int = 1
    s3_endpoint_url: str = ""
    aws_region: str = ""
    url_expiry_seconds: int = 3600
    public_url_template: str = ""
    max_side: int = 1024
    max_image_pixels: int = 0
    captioner: str = "local"
    captioner_model: str = ""
    captioner_base_url: str = ""
    captioner_concurrency: int = 4
    ocr: str = "auto"
    embedder: str = "sentence-transformers"
    embedder_model: str = "all-MiniLM-L6-v2"
    embedding_dimension: int = 1024
    bedrock_endpoint_url: str = ""
    vector_store: str = "chroma"
    chroma_path: Path | None = None
    chroma_url: str = ""
    pinecone_host: str = ""
    pinecone_index_name: str = ""
    pinecone_namespace: str = ""
    collection: str = "dam_images"
    reasoner: str = "extractive"
    reasoner_model: str = ""
    reasoner_base_url: str = ""
    reasoner_vision: bool = False
    llm_timeout: float = 30.0
    search_mode: str = "dense"
    max_delete_share: float = 0.5
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("DAM_DATA_DIR", str(default_data_dir()))).expanduser().resolve()
        return cls(
            data_dir=data_dir,
            source=_env("DAM_SOURCE", str(DataLayout(data_dir).library)),
            partition_depth=_env_int("DAM_PARTITION_DEPTH", 1),
            s3_endpoint_url=_env("AWS_ENDPOINT_URL_S3", _env("AWS_ENDPOINT_URL", "")),
            aws_region=_env("AWS_REGION", _env("AWS_DEFAULT_REGION", "")),
            url_expiry_seconds=_env_int("DAM_URL_EXPIRY_SECONDS", 3600),
            public_url_template=_env("DAM_PUBLIC_URL_TEMPLATE", ""),
            max_side=_env_int("DAM_MAX_SIDE", 1024),
            max_image_pixels=_env_int("DAM_MAX_IMAGE_PIXELS", 0),
            captioner=_env("DAM_CAPTIONER", "local"),
            captioner_model=_env("DAM_CAPTIONER_MODEL", ""),
            captioner_base_url=_env("DAM_CAPTIONER_BASE_URL", ""),
            captioner_concurrency=_env_int("DAM_CAPTIONER_CONCURRENCY", 4),
            ocr=_env("DAM_OCR", "auto"),
            embedder=_env("DAM_EMBEDDER", "sentence-transformers"),
            embedder_model=_env("DAM_EMBEDDER_MODEL", "all-MiniLM-L6-v2"),
            embedding_dimension=_env_int("DAM_EMBEDDING_DIMENSION", 1024),
            bedrock_endpoint_url=_env(
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", _env("DAM_BEDROCK_ENDPOINT_URL", "")
            ),
            vector_store=_env("DAM_VECTOR_STORE", "chroma"),
            chroma_path=Path(_env("DAM_CHROMA_PATH", str(DataLayout(data_dir).chroma))),
            chroma_url=_env("DAM_CHROMA_URL", ""),
            pinecone_host=_env("PINECONE_HOST", ""),
            pinecone_index_name=_env("PINECONE_INDEX_NAME", ""),
            pinecone_namespace=_env("PINECONE_NAMESPACE", ""),
            collection=_env("DAM_COLLECTION", "dam_images"),
            reasoner=_env("DAM_REASONER", "extractive"),
            reasoner_model=_env("DAM_REASONER_MODEL", ""),
            reasoner_base_url=_env("DAM_REASONER_BASE_URL", ""),
            reasoner_vision=_env("DAM_REASONER_VISION", "0").lower() in ("1", "true", "yes"),
            llm_timeout=_env_float("DAM_LLM_TIMEOUT", 30.0),
            search_mode=_env("DAM_SEARCH_MODE", "dense"),
            max_delete_share=_env_float("DAM_MAX_DELETE_SHARE", 0.5),
            workers=_env_int("DAM_WORKERS", min(4, os.cpu_count() or 1)),
        )

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    def build_reasoner(self) -> Reasoner:
        from dam_pipeline.reasoning import build_reasoner

        return build_reasoner(
            self.reasoner,
            self.reasoner_model,
            api_key_for(self.reasoner),
            self.reasoner_base_url,
            self.reasoner_vision,
            self.llm_timeout,
        )

    def build_captioner(self) -> Captioner:
        from dam_pipeline.captioning import build_captioner

        return build_captioner(
            self.captioner,
            model=self.captioner_model,
            api_key=api_key_for(self.captioner),
            base_url=self.captioner_base_url,
            concurrency=self.captioner_concurrency,
            ocr=self.ocr,
        )

    def build_embedder(self) -> Embedder:
        from dam_pipeline.embedding import build_embedder

        return build_embedder(
            self.embedder_model,
            provider=self.embedder,
            dimension=self.embedding_dimension,
            region=self.aws_region,
            endpoint_url=self.bedrock_endpoint_url,
        )

    def open_source(self) -> Source:
        """The configured source, outside Dagster (CLI, Python API, benchmarks)."""
        from dam_pipeline.sources import open_source, s3_client_from_env

        client = None
        if self.source.startswith("s3://"):
            client = s3_client_from_env(self.s3_endpoint_url, self.aws_region)
        return open_source(
            self.source,
            depth=self.partition_depth,
            s3_client=client,
            url_expiry_seconds=self.url_expiry_seconds,
            public_url_template=self.public_url_template,
        )


@dataclass(frozen=True)
class DataLayout:
    """What lives where under the data directory."""

    root: Path

    @property
    def library(self) -> Path:
        """The default local source (the demo puts its photos here)."""
        return self.root / "library"

    @property
    def objects(self) -> Path:
        """Content-addressed store of normalized images."""
        return self.root / "objects"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def cache(self) -> Path:
        return self.root / "cache" / "content_cache.sqlite"

    @property
    def keywords(self) -> Path:
        """The BM25 keyword index (SQLite FTS5), kept beside the vector index."""
        return self.root / "index" / "keywords.sqlite"

    @property
    def chroma(self) -> Path:
        return self.root / "chroma"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"
