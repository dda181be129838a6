"""One request model for searching and asking, with one set of defaults.

Every front end produces a ``SearchRequest``: the CLI from its arguments, the web app from
its query parameters, the Dagster query job from its config, the Python API from its
keyword arguments; ``Library.find`` and ``Library.answer`` take it. A front end never
repeats a default or a bound: it reads them from here.
"""

from __future__ import annotations

from datetime import date
from typing import Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

DEFAULT_TOP_K = 10
MAX_TOP_K = 100
DUPLICATE_DISTANCE = 6
"""Near duplicates: at most this many differing bits of the 64-bit hash (similarity 0.9)."""
MAX_DUPLICATE_DISTANCE = 32

Mode = Literal["dense", "hybrid", "keyword"]
Sort = Literal["relevance", "date"]
MODES = get_args(Mode)
SORTS = get_args(Sort)


class SearchRequest(BaseModel):
    """What to look for and how: the question and the twelve search options."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    top_k: int = Field(default=DEFAULT_TOP_K, ge=1, le=MAX_TOP_K)
    prefixes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    date_from: date | None = None
    date_to: date | None = None
    min_score: float | None = Field(default=None, ge=-1.0, le=1.0)
    """Drop hits under this similarity (None: ``DAM_MIN_SCORE``)."""
    mode: Mode | None = None
    """dense, hybrid or keyword (None: ``DAM_SEARCH_MODE``)."""
    sort: Sort = "relevance"
    """relevance (best first) or date (the same relevant images, newest first)."""
    people: tuple[str, ...] = ()
    """Names of people who must all be in the image (names in the question count too)."""
    places: tuple[str, ...] = ()
    """Place names, any of them: a city, the large city it is near, a region or a country
    (case and accents do not matter)."""
    near: tuple[float, float, float] | None = None
    """Taken within a distance of a point: (latitude, longitude, km), or "LAT,LON,KM"."""

    @field_validator("question")
    @classmethod
    def _has_words(cls, question: str) -> str:
        if not question.strip():
            raise ValueError("The question is empty: describe the image you are looking for.")
        return question.strip()

    @field_validator("top_k", mode="before")
    @classmethod
    def _top_k_in_range(cls, value: object) -> object:
        if isinstance(value, int) and not 1 <= value <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}, not {value}.")
        return value

    @field_validator("mode", "sort", mode="before")
    @classmethod
    def _one_of(cls, value: object, info: ValidationInfo) -> object:
        choices = MODES if info.field_name == "mode" else SORTS
        if value is not None and value not in choices:
            what = "search mode" if info.field_name == "mode" else "sort"
            raise ValueError(f"Unknown {what} {value!r}: use one of {', '.join(choices)}.")
        return value

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def _as_date(cls, value: object, info: ValidationInfo) -> object:
        """``YYYY-MM-DD`` (an empty text: no bound)."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{info.field_name} must be a date as YYYY-MM-DD, not {value!r}."
            ) from None

    @field_validator("near", mode="before")
    @classmethod
    def _point_and_radius(cls, value: object) -> object:
        if value is None or value == "":
            return None
        parts = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[arg-type]
        try:
            lat, lon, km = (float(str(p).strip()) for p in parts)
        except ValueError:
            raise ValueError(
                f"near must be LAT,LON,KM (e.g. 38.72,-9.14,10), not {value!r}."
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and 0 < km <= 20_000):
            raise ValueError(
                "near must be a latitude in -90..90, a longitude in -180..180 and a "
                f"distance in km above 0 (up to 20,000), not {value!r}."
            )
        return (lat, lon, km)

    @field_validator("prefixes", "tags", "people", "places", mode="before")
    @classmethod
    def _without_blanks(cls, values: object) -> object:
        if values is None:
            return ()
        if isinstance(values, str):
            values = [values]
        return tuple(str(v) for v in values if v and str(v).strip())

    @classmethod
    def of(cls, question: str, **options: object) -> SearchRequest:
        """A request from keyword arguments (None means the default), or ``QueryError``
        with one line saying what is wrong."""
        given = {name: value for name, value in options.items() if value is not None}
        try:
            return cls(question=question or "", **given)
        except ValidationError as exc:
            raise QueryError(one_line(exc)) from None

    def replace(self, **changes: object) -> SearchRequest:
        return SearchRequest.of(**{**self.model_dump(), **changes})


class QueryError(ValueError):
    """The request cannot be answered as asked (empty question, unknown prefix ...): one
    line saying what to change."""


def one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "request"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "value_error":
        return message
    return f"{where}: {message}."
