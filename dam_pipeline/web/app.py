"""`dam serve`: the search page and its JSON API, for people who do not use Dagster.

Every route calls the one ``Library`` (search, ask, similar, duplicates, detail): the page
answers exactly as the CLI, the Python API and the Dagster query job do. The library and its
models are opened once per process, when the app is created.

The page is rendered on the server (plain forms and links: it works with the keyboard and
without JavaScript); the JSON API under ``/api`` is what scripts use, described by
``/openapi.json`` (no documentation page: Swagger UI would load script from a CDN).

Limits: an upload is at most ``DAM_UPLOAD_MAX_MB`` (refused by its declared length, else
while it streams; a body that stalls for ``BODY_STALL_SECONDS`` is cut off); uploads decode
within the same memory budget as an ingest (``DAM_DECODE_MEMORY_MB``, the pixel limit
``DAM_MAX_IMAGE_PIXELS``). Every response forbids framing; without a token the app answers
only to its own host names (``DAM_SERVE_ALLOWED_HOSTS``).
"""

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from dam_pipeline.display import answer_text_html
from dam_pipeline.faces.people_store import PersonSummary, UnknownPersonError
from dam_pipeline.keys import video_of
from dam_pipeline.library import EmptyIndexError, Library, NotFoundError, QueryError
from dam_pipeline.reasoning import Answer
from dam_pipeline.retrieval import Hit
from dam_pipeline.search_request import (
    DEFAULT_TOP_K,
    DUPLICATE_DISTANCE,
    MAX_DUPLICATE_DISTANCE,
    MAX_TOP_K,
    SearchRequest,
)
from dam_pipeline.search_request import Mode as RequestMode
from dam_pipeline.search_request import Sort as RequestSort
from dam_pipeline.settings import Settings
from dam_pipeline.text import format_date, format_time, printable

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE = "dam_token"
OPEN_PATHS = ("/health", "/login", "/static/")
THUMBNAIL_CACHE = "public, max-age=31536000, immutable"
"""Thumbnails are addressed by the content hash of their image: they never change."""
ACTIONS = ("ask", "search")
API_PATHS = ("/api/", "/thumbnails/", "/originals", "/openapi", "/health")
"""Routes that answer machines (JSON errors); the others answer people (a page)."""
log = logging.getLogger("dam_pipeline.web")


BODY_STALL_SECONDS = 30.0
WRONG_TOKEN_DELAY = 1.0
"""Seconds every wrong token waits before its answer: guessing is slow."""
FRAMING = {"X-Frame-Options": "DENY"}
NO_FRAMES = "frame-ancestors 'none'"


class ErrorBody(BaseModel):
    """Every error the API returns: one line saying what went wrong and what to do."""

    error: str


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route (OpenAPI ``responses``)."""
    meaning = {
        400: "The request cannot be answered as asked (the message says why).",
        401: "This server needs a token.",
        404: "No such image, thumbnail or file.",
        409: "Nothing is indexed yet: run an ingest.",
        413: "The upload is larger than DAM_UPLOAD_MAX_MB.",
        422: "A parameter is missing or not of its type.",
        503: "The index or its storage cannot answer right now.",
    }
    return {
        status: {"model": ErrorBody, "description": meaning[status]}
        for status in (*statuses, 401, 422, 503)
    }


# Query parameters (no `from __future__ import annotations` here: FastAPI reads these types)
TopK = Annotated[int, Query(ge=1, le=MAX_TOP_K, description=f"How many images, 1 to {MAX_TOP_K}.")]
Prefixes = Annotated[list[str] | None, Query(description="Only these prefixes.")]
Tags = Annotated[list[str] | None, Query(description="Only images with all these tags.")]
People = Annotated[list[str] | None, Query(description="Only photos with all these named people.")]
Places = Annotated[
    list[str] | None, Query(description="Taken in any of these cities, regions or countries.")
]
Near = Annotated[str | None, Query(description="LAT,LON,KM: taken within KM of the point.")]
PersonName = Annotated[str, Form(max_length=200, description="The name ('' takes it away).")]
Day = Annotated[str | None, Query(description="YYYY-MM-DD, on the date taken.")]
Mode = Annotated[RequestMode | None, Query(description="dense, hybrid or keyword.")]
Sort = Annotated[
    RequestSort,
    Query(description="relevance (best first) or date (the same images, newest first)."),
]


class UploadTooLarge(QueryError):
    """An upload over ``DAM_UPLOAD_MAX_MB``."""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, UploadTooLarge):
        return 413
    if isinstance(exc, EmptyIndexError):
        return 409
    return 400


def cite_links(text: str, sources: int) -> Markup:
    """The answer as HTML: escaped, each [Sn] a link to its image on the page."""
    return Markup(
        answer_text_html(text, sources, lambda n: f'<a class="cite" href="#hit-{n}">[S{n}]</a>')
    )


def create_app(settings: Settings, library: Library | None = None) -> FastAPI:
    """The web app over one library (opened here, once)."""
    library = library or Library(settings)
    token = settings.api_token.get_secret_value()
    upload_limit = int(settings.upload_max_mb * 2**20)
    app = FastAPI(
        title="dam_pipeline",
        summary="Find images by describing them; answers cite the images they come from.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    allowed_hosts = _allowed_hosts(settings)
    # the multipart around an upload is a few hundred bytes; 64 KB of room for it
    app.add_middleware(BodyLimit, limit=upload_limit + 64 * 1024, megabytes=settings.upload_max_mb)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["cite_links"] = cite_links
    templates.env.filters["printable"] = printable
    templates.env.filters["cards"] = cards
    templates.env.filters["clock"] = format_time
    templates.env.filters["when"] = format_date
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def thumbnail_url(digest: str) -> str:
        return f"/thumbnails/{digest}.jpg" if digest else ""

    def original_url(key: str) -> str:
        return "/originals?" + urlencode({"key": key})

    def hit_json(hit: Hit) -> dict[str, Any]:
        data = hit.to_dict()
        if not data["url"].startswith(("http://", "https://")):
            data["url"] = original_url(hit.key)  # never a path on the server's disk
        data["thumbnail_url"] = thumbnail_url(hit.normalized_hash)
        data["detail_url"] = "/image?" + urlencode({"key": hit.key})
        if hit.video_key:  # the page's player starts at the shot
            data["url"] += f"#t={hit.start_seconds:g},{hit.end_seconds:g}"
        return data

    def answer_json(answer: Answer) -> dict[str, Any]:
        data = answer.to_dict()
        data["hits"] = [hit_json(hit) for hit in answer.sources]
        return data

    def authorized(request: Request) -> bool:
        if not token:
            return True
        return secrets.compare_digest(_token_given(request).encode(), token.encode())

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        path = request.url.path
        if not token and not _host_allowed(request.headers.get("host", ""), allowed_hosts):
            response = _error(
                400,
                "This host name is not served: open the page by the address it was started "
                "on, or add the name to DAM_SERVE_ALLOWED_HOSTS.",
            )
        elif authorized(request) or path.startswith(OPEN_PATHS):
            try:
                response = await call_next(request)
            except Exception as exc:  # never a bare 500: say what failed, log it once
                response = unavailable(request, exc)
        else:
            if _token_given(request):
                await asyncio.sleep(WRONG_TOKEN_DELAY)  # a wrong one: guessing is slow
            if path.startswith(API_PATHS):
                message = "This server needs a token: send 'Authorization: Bearer …'."
                response = _error(401, message)
            else:
                here = path + (f"?{request.url.query}" if request.url.query else "")
                response = RedirectResponse("/login?" + urlencode({"next": here}), 303)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        policy = response.headers.get("Content-Security-Policy")
        response.headers["Content-Security-Policy"] = (
            f"{policy}; {NO_FRAMES}" if policy else NO_FRAMES
        )
        return response

    logged: set[str] = set()

    def unavailable(request: Request, exc: Exception) -> Response:
        """A failure of the index or the storage behind it (a server restarting, a
        database gone): 503 with one readable line, the cause logged once per kind."""
        cause = f"{type(exc).__name__}: {printable(str(exc))[:300]}"
        if cause not in logged:
            logged.add(cause)
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        message = (
            f"The library cannot answer right now ({cause}). Try again in a moment; "
            "if it persists, the server's log says more."
        )
        if request.url.path.startswith(API_PATHS):
            return _error(503, message)
        return page(request, "results.html", status=503, error=message)

    @app.exception_handler(QueryError)
    async def query_error(request: Request, exc: QueryError):
        return _error(_status_of(exc), str(exc))

    @app.exception_handler(EmptyIndexError)
    async def empty_index(request: Request, exc: EmptyIndexError):
        return _error(409, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        said = "is required" if first.get("type") == "missing" else first.get("msg", "invalid")
        message = f"{where}: {said}."
        if request.url.path.startswith(API_PATHS):
            return _error(422, message)
        return page(request, "results.html", status=400, error=f"This link is not valid: {message}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None) or {}
        if request.url.path.startswith(API_PATHS) or request.method not in ("GET", "HEAD"):
            response = _error(exc.status_code, str(exc.detail))
        else:
            shown = "No such page." if exc.status_code == 404 else str(exc.detail)
            response = page(request, "results.html", status=exc.status_code, error=shown)
        response.headers.update(headers)  # a 405 keeps its Allow
        return response

    # Things every route shares

    def search_request(
        q: str,
        top_k: int,
        prefix: list[str] | None,
        tag: list[str] | None,
        date_from: str | None,
        date_to: str | None,
        mode: str | None,
        sort: str | None,
        person: list[str] | None = None,
        place: list[str] | None = None,
        near: str | None = None,
    ) -> SearchRequest:
        """The page's and the API's ``SearchRequest`` (what the CLI and the job build too)."""
        return SearchRequest.of(
            q, top_k=top_k, prefixes=prefix, tags=tag, date_from=date_from, date_to=date_to,
            mode=mode or None, sort=sort or None, people=person, places=place,
            near=near or None,
        )  # fmt: skip

    async def read_upload(upload: UploadFile) -> bytes:
        data = await upload.read(upload_limit + 1)
        if len(data) > upload_limit:
            raise UploadTooLarge(
                f"The upload is larger than {settings.upload_max_mb:g} MB (DAM_UPLOAD_MAX_MB)."
            )
        if not data:
            raise QueryError("The upload is empty: choose an image file.")
        return data

    # The JSON API

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Up, and whether anything is indexed (needs no token)."""
        try:
            library.require_index()
            indexed = True
        except EmptyIndexError:
            indexed = False
        return {"status": "ok", "indexed": indexed}

    def question(
        q: Annotated[
            str,
            Query(
                min_length=1,
                max_length=2000,
                pattern=r"\S",
                description="What to look for, in plain words (not only spaces).",
            ),
        ],
        top_k: TopK = DEFAULT_TOP_K,
        prefix: Prefixes = None,
        tag: Tags = None,
        date_from: Day = None,
        date_to: Day = None,
        mode: Mode = None,
        sort: Sort = "relevance",
        person: People = None,
        place: Places = None,
        near: Near = None,
    ) -> SearchRequest:
        """The request of /api/search and /api/ask."""
        return search_request(
            q, top_k, prefix, tag, date_from, date_to, mode, sort, person, place, near
        )

    Question = Annotated[SearchRequest, Depends(question)]

    @app.get("/api/search", tags=["api"], responses=errors(400, 409))
    def api_search(asked: Question) -> dict[str, Any]:
        """Images that match the question, best first."""
        hits = library.find(asked)
        found: dict[str, Any] = {"hits": [hit_json(hit) for hit in hits]}
        if getattr(hits, "rerank_error", ""):
            found["rerank_error"] = hits.rerank_error
        return found

    @app.get("/api/ask", tags=["api"], responses=errors(400, 409))
    def api_ask(asked: Question) -> dict[str, Any]:
        """An answer from the retrieved captions only, citing its images as [S1]..[Sn]."""
        return answer_json(library.answer(asked))

    @app.get("/api/similar", tags=["api"], responses=errors(400, 404, 409))
    def api_similar(
        key: Annotated[str, Query(min_length=1)],
        top_k: TopK = DEFAULT_TOP_K,
        prefix: Prefixes = None,
    ) -> dict[str, Any]:
        """Images most like an indexed one."""
        hits = library.similar(key=key, top_k=top_k, prefixes=[p for p in prefix or () if p])
        return {"hits": [hit_json(hit) for hit in hits]}

    @app.post("/api/similar", tags=["api"], responses=errors(400, 409, 413))
    async def api_similar_upload(
        image: Annotated[UploadFile, File(description="An image; it is not stored.")],
        top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
    ) -> dict[str, Any]:
        """Images most like an uploaded one (normalized, captioned and embedded as the
        pipeline would, then forgotten)."""
        data = await read_upload(image)
        hits = await run_in_threadpool(library.similar, image=data, top_k=top_k)
        return {"hits": [hit_json(hit) for hit in hits]}

    @app.get("/api/duplicates", tags=["api"], responses=errors(400, 409))
    def api_duplicates(
        prefix: Prefixes = None,
        max_distance: Annotated[
            int, Query(ge=0, le=MAX_DUPLICATE_DISTANCE, description="Bits of 64.")
        ] = DUPLICATE_DISTANCE,
    ) -> dict[str, Any]:
        """Groups of near-duplicate images."""
        groups = library.duplicates(prefixes=prefix or None, max_distance=max_distance)
        return {"groups": [group.to_dict() for group in groups]}

    @app.get("/api/prefixes", tags=["api"], responses=errors(409))
    def api_prefixes() -> dict[str, Any]:
        """The prefixes that hold indexed images."""
        return {"prefixes": library.prefixes()}

    @app.get("/api/image", tags=["api"], responses=errors(404, 409))
    def api_image(key: Annotated[str, Query(min_length=1)]) -> dict[str, Any]:
        """Everything the index knows about one image."""
        detail = library.detail(key).to_dict()
        detail["thumbnail_url"] = thumbnail_url(detail["normalized_hash"])
        detail["faces"] = [face_json(face) for face in library.faces_in_photo(key)]
        if not detail["url"].startswith(("http://", "https://")):
            detail["url"] = original_url(key)
        return detail

    def face_json(face: dict[str, Any]) -> dict[str, Any]:
        return {**face, "crop_url": f"/faces/{face['face_id']}.jpg"}

    def person_json(person: PersonSummary) -> dict[str, Any]:
        data = person.to_dict()
        data["crop_url"] = f"/faces/{person.sample_face}.jpg" if person.sample_face else ""
        data["search_url"] = "/api/search?" + urlencode({"q": "a photo", "person": person.name})
        return data

    @app.get("/api/places", tags=["api"], responses=errors(409))
    def api_places() -> dict[str, Any]:
        """Countries, their regions and cities, with photo counts."""
        return {"places": library.places()}

    @app.get("/api/map", tags=["api"], responses=errors(409))
    def api_map() -> dict[str, Any]:
        """Photos with coordinates, for a map (none when DAM_LOCATION is coarse or off)."""
        points = library.map_points()
        for point in points:
            point["detail_url"] = "/image?" + urlencode({"key": point["key"]})
            point["thumbnail_url"] = thumbnail_url(point.pop("normalized_hash"))
        return {"points": points, "limit": library.MAP_POINTS}

    @app.get("/api/people", tags=["people"], responses=errors())
    def api_people(hidden: bool = False) -> dict[str, Any]:
        """The people found in the photos, the most photographed first."""
        return {"people": [person_json(p) for p in library.people_list(include_hidden=hidden)]}

    @app.get("/api/people/{person_id}", tags=["people"], responses=errors(404))
    def api_person(person_id: int) -> dict[str, Any]:
        """One person, with each of their faces."""
        return person_json(person_or_404(person_id)) | {
            "face_list": [face_json(f) for f in library.person_faces(person_id)]
        }

    @app.post("/api/people/{person_id}/name", tags=["people"], responses=errors(400, 404))
    def api_name_person(person_id: int, name: PersonName) -> dict[str, Any]:
        """Name a person (an empty name takes it away); searches use it at once."""
        person_or_404(person_id)
        return person_json(library.name_person(person_id, name))

    @app.post("/api/people/{person_id}/merge", tags=["people"], responses=errors(400, 404))
    def api_merge_people(
        person_id: int, other: Annotated[int, Form(description="The person to merge in.")]
    ) -> dict[str, Any]:
        """``other``'s faces become this person's (a decision re-grouping keeps)."""
        person_or_404(person_id), person_or_404(other)
        return person_json(library.merge_people(person_id, other))

    @app.post("/api/people/{person_id}/hide", tags=["people"], responses=errors(400, 404))
    def api_hide_person(person_id: int, hidden: Annotated[bool, Form()] = True) -> dict[str, Any]:
        """Leave a person out of lists and searches (or show them again)."""
        person_or_404(person_id)
        library.hide_person(person_id, hidden)
        return {"id": person_id, "hidden": hidden}

    @app.post("/api/faces/{face_id}/detach", tags=["people"], responses=errors(400, 404))
    def api_detach_face(face_id: str) -> dict[str, Any]:
        """Take a face out of its person; it never goes back to them."""
        try:
            return {"face_id": face_id, "person": library.detach_face(face_id)}
        except UnknownPersonError as exc:
            raise NotFoundError(str(exc.args[0])) from None

    @app.get("/faces/{name}", tags=["files"], response_class=Response, responses=errors(404))
    def face_crop(name: str) -> Response:
        """The crop of one face (96 px JPEG)."""
        data = library.face_chip(name.removesuffix(".jpg"))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private"})

    def person_or_404(person_id: int) -> PersonSummary:
        try:
            return library.person(person_id)
        except UnknownPersonError as exc:
            raise NotFoundError(str(exc.args[0])) from None

    @app.get("/thumbnails/{name}", tags=["files"], response_class=Response, responses=errors(404))
    def thumbnail(name: str, request: Request) -> Response:
        """A small JPEG of a normalized image, named by its content hash."""
        digest = name.removesuffix(".jpg")
        cached = request.headers.get("if-none-match") == f'"{digest}"'
        if cached and library.has_thumbnail(digest):
            return Response(status_code=304, headers={"Cache-Control": THUMBNAIL_CACHE})
        data = library.thumbnail(digest)
        headers = {"Cache-Control": THUMBNAIL_CACHE, "ETag": f'"{digest}"'}
        return Response(data, media_type="image/jpeg", headers=headers)

    @app.get("/originals", tags=["files"], response_class=Response, responses=errors(404, 409))
    def original(key: Annotated[str, Query(min_length=1)]) -> Response:
        """The original file of an indexed image (a redirect for a bucket)."""
        found = library.original(key)
        if found.url:
            return RedirectResponse(found.url, status_code=307)
        name = quote(video_of(key) or key).rsplit("/", 1)[-1]
        shown = "inline" if found.media_type.startswith(("image/", "video/")) else "attachment"
        headers = {
            "Content-Disposition": f"{shown}; filename*=UTF-8''{name}",
            "Content-Security-Policy": "default-src 'none'; media-src 'self'",
        }
        if found.path is not None:  # a video: the player asks for byte ranges
            return FileResponse(found.path, media_type=found.media_type, headers=headers)
        return Response(found.data, media_type=found.media_type, headers=headers)

    # The page

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        try:
            prefixes = library.prefixes()
        except Exception:  # the page still renders (with its error) if listing fails
            prefixes = []
        base = {"prefixes": prefixes, "q": "", "action": "ask", "error": "", "selected": {}}
        return templates.TemplateResponse(
            request, template, {**base, **context}, status_code=status
        )

    def page_error(request: Request, exc: Exception, **context: Any) -> HTMLResponse:
        empty = isinstance(exc, EmptyIndexError)
        return page(
            request,
            "results.html",
            status=_status_of(exc),
            error=str(exc),
            empty_index=empty,
            **context,
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(
        request: Request,
        q: str = "",
        action: str = "ask",
        top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K,
        prefix: Prefixes = None,
        tag: str = "",
        date_from: str = "",
        date_to: str = "",
        mode: str = "",
        sort: str = "relevance",
        like: str = "",
        person: People = None,
        place: Places = None,
    ) -> HTMLResponse:
        person = [p for p in person or () if p.strip()]  # the page's empty fields
        place = [p for p in place or () if p.strip()]
        selected = {
            "sort": sort,
            "prefix": (prefix or [""])[0],
            "tag": tag,
            "person": ", ".join(person),
            "place": ", ".join(place),
            "date_from": date_from,
            "date_to": date_to,
            "mode": mode,
        }
        context: dict[str, Any] = {"q": q, "action": action, "selected": selected}
        try:
            if like:
                hits = library.similar(key=like, top_k=top_k)
                return page(request, "results.html", like=like, hits=hits, **context)
            if not q.strip():
                library.require_index()
                return page(request, "results.html", hits=None, **context)
            asked = search_request(
                q, top_k, prefix, tag.split(), date_from, date_to, mode, sort, person, place
            )
            if action == "search":
                hits = library.find(asked)
                return page(request, "results.html", hits=hits, **context)
            answer = library.answer(asked)
            return page(request, "results.html", answer=answer, hits=answer.sources, **context)
        except (QueryError, EmptyIndexError) as exc:
            return page_error(request, exc, **context)

    @app.post("/similar", response_class=HTMLResponse, include_in_schema=False)
    async def similar_upload(
        request: Request, image: Annotated[UploadFile, File()]
    ) -> HTMLResponse:
        try:
            data = await read_upload(image)
            hits = await run_in_threadpool(library.similar, image=data, top_k=DEFAULT_TOP_K)
        except (QueryError, EmptyIndexError) as exc:
            return page_error(request, exc)
        return page(request, "results.html", hits=hits, uploaded=image.filename or "your image")

    @app.get("/image", response_class=HTMLResponse, include_in_schema=False)
    def image_detail(request: Request, key: str) -> HTMLResponse:
        try:
            detail = library.detail(key)
        except (QueryError, EmptyIndexError) as exc:
            return page_error(request, exc)
        faces = library.faces_in_photo(key)
        return page(request, "detail.html", detail=detail, original=original_url(key), faces=faces)

    @app.get("/duplicates", response_class=HTMLResponse, include_in_schema=False)
    def duplicates_page(
        request: Request,
        max_distance: Annotated[int, Query(ge=0, le=MAX_DUPLICATE_DISTANCE)] = DUPLICATE_DISTANCE,
    ) -> HTMLResponse:
        try:
            groups = library.duplicates(max_distance=max_distance)
        except (QueryError, EmptyIndexError) as exc:
            return page_error(request, exc)
        details = {key: library.detail(key) for group in groups for key in group.keys}
        return page(request, "duplicates.html", groups=groups, details=details)

    @app.get("/map", response_class=HTMLResponse, include_in_schema=False)
    def map_page(request: Request) -> HTMLResponse:
        return page(
            request,
            "map.html",
            places=library.places(),
            tiles=settings.map_tiles,
            location=settings.location,
        )

    @app.get("/people", response_class=HTMLResponse, include_in_schema=False)
    def people_page(request: Request, hidden: bool = False) -> HTMLResponse:
        people = library.people_list(include_hidden=hidden)
        return page(request, "people.html", people=people, hidden=hidden)

    @app.get("/people/{person_id}", response_class=HTMLResponse, include_in_schema=False)
    def person_page(request: Request, person_id: int) -> HTMLResponse:
        try:
            person = person_or_404(person_id)
        except NotFoundError as exc:
            return page(request, "results.html", status=404, error=str(exc))
        faces = library.person_faces(person_id)
        details = {}
        for key in person.photos[:200]:
            try:
                details[key] = library.detail(key)
            except (QueryError, EmptyIndexError):
                continue  # indexed later than its faces were found
        return page(request, "person.html", person=person, faces=faces, details=details)

    @app.post("/people/{person_id}/name", include_in_schema=False)
    def rename_person(person_id: int, name: PersonName) -> Response:
        person_or_404(person_id)
        library.name_person(person_id, name)
        return RedirectResponse(f"/people/{person_id}", status_code=303)

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return page(request, "login.html", next=_local(next))

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        token_given: Annotated[str, Form(alias="token")],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        if not token or not secrets.compare_digest(token_given.encode(), token.encode()):
            time.sleep(WRONG_TOKEN_DELAY)  # guessing is slow (this runs in a worker thread)
            return page(request, "login.html", status=401, next=_local(next), error="Wrong token.")
        response = RedirectResponse(_local(next), status_code=303)
        secure = request.url.scheme == "https"
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", secure=secure)
        return response

    return app


class BodyLimit:
    """Request bodies are read here first, at most ``limit`` bytes: refused at once by
    their declared length, else as soon as they pass it while streaming (413); a body that
    stops arriving for ``BODY_STALL_SECONDS`` ends the request (408). The app then reads
    the body from memory, so no route holds a larger one, however it parses it."""

    def __init__(self, app, limit: int, megabytes: float) -> None:
        self.app = app
        self.limit = limit
        self.megabytes = megabytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, 413, self._too_large())
            return
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), BODY_STALL_SECONDS)
            except TimeoutError:
                await self._refuse(send, 408, "The request body stopped arriving: send it again.")
                return
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send, 413, self._too_large())
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()  # the client leaving, as the app may wait for it
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"The upload is larger than {self.megabytes:g} MB (DAM_UPLOAD_MAX_MB)."

    @staticmethod
    async def _refuse(send, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    (b"x-frame-options", b"DENY"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Card:
    """One card of the results grid: a hit, and the other matching shots of its video
    (so that one clip does not fill the grid); numbers are the answer's [S…]."""

    number: int
    hit: Hit
    moments: list[tuple[int, Hit]]


def cards(hits: Sequence[Hit]) -> list[Card]:
    """Hits in order, each video's shots under its best one."""
    grid: list[Card] = []
    by_video: dict[str, Card] = {}
    for number, hit in enumerate(hits, start=1):
        card = by_video.get(hit.video_key) if hit.video_key else None
        if card is not None:
            card.moments.append((number, hit))
            continue
        card = Card(number, hit, [])
        grid.append(card)
        if hit.video_key:
            by_video[hit.video_key] = card
    return grid


def _token_given(request: Request) -> str:
    """The token a request carries: ``Authorization: Bearer …``, else the login cookie."""
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    return given or request.cookies.get(TOKEN_COOKIE, "")


def _allowed_hosts(settings: Settings) -> frozenset[str]:
    """The host names a token-less app answers to: its own address, localhost, and
    ``DAM_SERVE_ALLOWED_HOSTS``."""
    named = {h.strip().lower() for h in settings.serve_allowed_hosts.split(",") if h.strip()}
    return frozenset({"localhost", "127.0.0.1", "::1", settings.serve_host.lower(), *named})


def _host_allowed(host_header: str, allowed: frozenset[str]) -> bool:
    if "*" in allowed:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host in allowed


def _local(path: str) -> str:
    """Only a path on this site (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else "/"
