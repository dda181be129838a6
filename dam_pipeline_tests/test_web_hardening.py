"""The web app against hostile requests, second round: every failure a readable page or one
line of JSON with the right status; uploads bounded while they stream and decoded within the
ingest's memory budget; no framing, no foreign host names, slow token guessing; an OpenAPI
schema that tells the truth (a schema-based fuzzer against the live app); login that keeps
the deep link."""

from __future__ import annotations

import io
import os
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from dam_pipeline.imaging import decode_cost
from dam_pipeline.library import Library
from dam_pipeline.settings import Settings
from dam_pipeline.web import app as web_app
from dam_pipeline.web import create_app
from dam_pipeline.web.server import running
from dam_pipeline_tests.conftest import IngestedLibrary, ingest, photo, write_library

TOKEN = "s3cret-token"


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_an_original_that_changed_since_indexing_is_a_404_with_one_line(
    settings: Settings, instance, tmp_path
) -> None:
    write_library(settings.layout.library, {f"p/{n}.jpg": "chelsea" for n in "abc"})
    ingest(settings, instance)
    folder = settings.layout.library / "p"
    (folder / "a.jpg").unlink()  # deleted
    (folder / "b.jpg").unlink()
    (folder / "b.jpg").mkdir()  # replaced by a folder
    (folder / "c.jpg").unlink()
    (tmp_path / "outside.jpg").write_bytes(b"secret")
    (folder / "c.jpg").symlink_to(tmp_path / "outside.jpg")  # a link out of the library
    app = TestClient(create_app(settings, Library(settings)), base_url="http://localhost")
    for key, says in (("p/a.jpg", "deleted"), ("p/b.jpg", "cannot be read"), ("p/c.jpg", "")):
        response = app.get("/originals", params={"key": key})
        assert response.status_code == 404, key
        assert response.headers["content-type"] == "application/json"
        assert says in response.json()["error"] and "\n" not in response.json()["error"]


def test_a_bad_link_is_a_readable_page(client: TestClient) -> None:
    for path, params, says in (
        ("/", {"q": "cat", "top_k": "abc"}, "top_k"),
        ("/image", {}, "key: is required"),
        ("/no-such-page", {}, "No such page"),
    ):
        page = client.get(path, params=params)
        assert page.status_code in (400, 404) and page.headers["content-type"].startswith(
            "text/html"
        )
        assert says in page.text and "<form" in page.text  # the page, with its search box


def test_uploads_are_bounded_while_they_stream_and_a_stalled_one_ends(
    shared_library: IngestedLibrary, web_library: Library, monkeypatch
) -> None:
    monkeypatch.setattr(web_app, "BODY_STALL_SECONDS", 1.0)
    app = create_app(shared_library.settings.replace(upload_max_mb=0.05), web_library)
    with running(app) as address:
        host, port = address.removeprefix("http://").split(":")

        def raw(request: bytes, wait: float = 5.0) -> bytes:
            answer = b""
            with socket.create_connection((host, int(port)), timeout=wait) as sock:
                sock.sendall(request)
                while chunk := sock.recv(4096):  # until the server closes the connection
                    answer += chunk
            return answer

        huge = raw(  # a declared length over the limit: refused before any of it is read
            b"POST /api/similar HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 52428800\r\n\r\n--x\r\n"
        )
        assert huge.startswith(b"HTTP/1.1 413") and b"DAM_UPLOAD_MAX_MB" in huge

        def chunks():
            for _ in range(40):  # 40 x 8 KB, no length declared: counted as it arrives
                yield b"\0" * 8192

        streamed = httpx.post(
            f"{address}/api/similar",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert streamed.status_code == 413
        started = time.monotonic()
        stalled = raw(
            b"POST /api/similar HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 1000\r\n\r\n--x\r\n"
        )
        assert stalled.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 4.0  # ended by the stall limit, not the client


def test_uploads_decode_within_the_memory_budget_and_the_pixel_limit(
    shared_library: IngestedLibrary,
) -> None:
    settings = shared_library.settings.replace(decode_memory_mb=40, upload_max_mb=30)
    library = Library(settings)
    app = TestClient(create_app(settings, library), base_url="http://localhost")
    picture = png(photo("chelsea").resize((2000, 2000)))
    answers = []

    def post() -> None:
        answers.append(app.post("/api/similar", files={"image": ("p.png", picture, "image/png")}))

    threads = [threading.Thread(target=post) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200, 200]
    one = decode_cost(picture, settings.max_side, len(picture))
    assert library._upload_budget.peak == one  # two would not fit in 40 MB: one at a time
    bomb = png(Image.new("1", (9400, 9400)))  # 10 KB, 88 megapixels
    strict = settings.replace(max_image_pixels=20_000_000)
    limited = TestClient(
        create_app(strict, Library(strict)),
        base_url="http://localhost",
    )
    refused = limited.post("/api/similar", files={"image": ("b.png", bomb, "image/png")})
    assert refused.status_code == 400 and "decompression bomb" in refused.json()["error"]


def test_no_framing_no_cdn_no_foreign_host_and_honest_caching(
    client: TestClient, shared_library: IngestedLibrary, web_library: Library
) -> None:
    page = client.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client.get("/docs").status_code == 404  # Swagger UI would load a CDN's script
    assert client.get("/openapi.json").status_code == 200
    rebound = client.get("/api/prefixes", headers={"host": "evil.example"})
    assert rebound.status_code == 400 and "DAM_SERVE_ALLOWED_HOSTS" in rebound.json()["error"]
    named = TestClient(
        create_app(shared_library.settings.replace(serve_allowed_hosts="photos.lan"), web_library),
        base_url="http://photos.lan:8000",
    )
    assert named.get("/api/prefixes").status_code == 200
    unknown = "0" * 64
    cached = client.get(f"/thumbnails/{unknown}.jpg", headers={"if-none-match": f'"{unknown}"'})
    assert cached.status_code == 404  # 304 only for a thumbnail that exists
    wrong_method = client.post("/api/search", params={"q": "cat"})
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "GET"


def test_tokens_over_https_get_a_secure_cookie_and_guessing_is_slow(
    shared_library: IngestedLibrary, web_library: Library, monkeypatch
) -> None:
    monkeypatch.setattr(web_app, "WRONG_TOKEN_DELAY", 0.4)
    guarded = create_app(shared_library.settings.replace(api_token=TOKEN), web_library)
    secure = TestClient(guarded, base_url="https://photos.example")  # any host with a token
    login = secure.post("/login", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
    assert login.status_code == 303 and "secure" in login.headers["set-cookie"].lower()
    started = time.monotonic()
    wrong = secure.get("/api/prefixes", headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 401 and time.monotonic() - started >= 0.4


def test_login_keeps_the_deep_link_and_shows_only_the_token_field(
    shared_library: IngestedLibrary, web_library: Library
) -> None:
    guarded = TestClient(
        create_app(shared_library.settings.replace(api_token=TOKEN), web_library),
        base_url="http://localhost",
    )
    key = "kitchen/coffee.jpg"
    sent = guarded.get("/image", params={"key": key}, follow_redirects=False)
    target = httpx.URL(sent.headers["location"]).params["next"]
    assert target == "/image?key=kitchen%2Fcoffee.jpg"
    form = guarded.get(sent.headers["location"])
    assert 'name="token"' in form.text and "autofocus" in form.text
    assert 'role="search"' not in form.text  # no search header before logging in
    back = guarded.post("/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
    assert back.headers["location"] == target
    assert guarded.get(target).status_code == 200


def test_the_openapi_schema_documents_every_error_and_bound(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "ErrorBody" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        if path == "/health":  # open to all, always answers
            continue
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"401", "422", "503"} <= documented, (method, path)
    search = schema["paths"]["/api/search"]["get"]
    top_k = next(p for p in search["parameters"] if p["name"] == "top_k")["schema"]
    assert (top_k["minimum"], top_k["maximum"]) == (1, 100)
    assert {"400", "409"} <= set(search["responses"])


@pytest.mark.skipif(os.environ.get("DAM_SKIP_FUZZ") == "1", reason="DAM_SKIP_FUZZ=1")
def test_schema_valid_requests_never_fail_and_every_refusal_is_documented(
    shared_library: IngestedLibrary, web_library: Library, client: TestClient
) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_dict(client.get("/openapi.json").json())
    with running(create_app(shared_library.settings, web_library)) as address:
        tried = 0

        def checker(documented: set[int]):
            @settings(
                max_examples=8,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def holds(case) -> None:
                nonlocal tried
                tried += 1
                response = case.call(base_url=address, headers={"host": "localhost"})
                assert response.status_code < 500, (case.path, case.query, response.text)
                assert response.status_code in documented | {200, 307}, response.status_code
                if response.status_code >= 400:
                    assert set(response.json()) == {"error"}

            return holds

        for result in schema.get_all_operations():
            operation = result.ok()
            checker({int(status) for status in operation.definition.raw["responses"]})()
    assert tried >= 40
