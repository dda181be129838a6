"""Configuration from the environment, shared by the CLI, the Python API and the Dagster layer.

Every knob has an offline default so that a fresh clone works with no variables set; see
``.env.example`` for the full list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def default_data_dir() -> Path:
    """``<project>/data`` in a source checkout, else a per-user folder."""
    project_root = _PACKAGE_DIR.parent
    if (project_root / "pyproject.toml").exists():
        return project_root / "data"
    return Path.home() / ".local" / "share" / "dam_pipeline"


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
    max_side: int = 1024
    captioner: str = "local"
    embedder_model: str = "all-MiniLM-L6-v2"
    vector_store: str = "chroma"
    chroma_path: Path | None = None
    collection: str = "dam_images"
    reasoner: str = "extractive"
    max_delete_share: float = 0.5
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(_env("DAM_DATA_DIR", str(default_data_dir()))).expanduser().resolve()
        return cls(
            data_dir=data_dir,
            source=_env("DAM_SOURCE", str(DataLayout(data_dir).library)),
            max_side=_env_int("DAM_MAX_SIDE", 1024),
            captioner=_env("DAM_CAPTIONER", "local"),
            embedder_model=_env("DAM_EMBEDDER_MODEL", "all-MiniLM-L6-v2"),
            vector_store=_env("DAM_VECTOR_STORE", "chroma"),
            chroma_path=Path(_env("DAM_CHROMA_PATH", str(DataLayout(data_dir).chroma))),
            collection=_env("DAM_COLLECTION", "dam_images"),
            reasoner=_env("DAM_REASONER", "extractive"),
            max_delete_share=_env_float("DAM_MAX_DELETE_SHARE", 0.5),
            workers=_env_int("DAM_WORKERS", min(4, os.cpu_count() or 1)),
        )

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)


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
    def chroma(self) -> Path:
        return self.root / "chroma"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"
