"""The search page and the JSON API (`dam serve`), on the shared ingested library: every
route through FastAPI's test client, and the page in a real browser (Debian's chromium,
driven by Playwright)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from dam_pipeline.library import Library
from dam_pipeline.settings import Settings
from dam_pipeline.web import create_app
from dam_pipeline.web.server import free_port, running
from dam_pipeline_tests.conftest import (
    CAT,
    CAT_COPY,
    HOSTILE,
    IngestedLibrary,
    jpeg_bytes,
    photo,
)

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "s3cret-token"


def one_line_error(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and body["error"]
    return body["error"]


def test_search_returns_hits_with_thumbnails_and_links(client: TestClient) -> None:
    response = client.get("/api/search", params={"q": "a cup of coffee", "top_k": 3})
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert hits[0]["key"] == "kitchen/coffee.jpg" and len(hits) <= 3
    first = hits[0]
    assert {"key", "score", "caption", "tags", "partition", "url", "thumbnail_url"} <= set(first)
    assert first["url"].startswith("/originals?")  # a folder's file, never a server path
    thumbnail = client.get(first["thumbnail_url"])
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
    assert "immutable" in thumbnail.headers["cache-control"]
    etag = thumbnail.headers["etag"]
    assert client.get(first["thumbnail_url"], headers={"If-None-Match": etag}).status_code == 304
    original = client.get(first["url"])
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    assert original.headers["x-content-type-options"] == "nosniff"


def test_filters_narrow_the_search(client: TestClient) -> None:
    kitchen = client.get("/api/search", params={"q": "a photo", "prefix": "kitchen"}).json()
    assert {hit["partition"] for hit in kitchen["hits"]} == {"kitchen"}
    dated = client.get(
        "/api/search",
        params={"q": "coffee", "date_from": "2019-06-01", "date_to": "2019-06-01"},
    ).json()
    assert [hit["key"] for hit in dated["hits"]] == ["kitchen/coffee.jpg"]
    tagged = client.get("/api/search", params={"q": "an animal", "tag": "cat"}).json()
    assert tagged["hits"] and all("cat" in hit["tags"] for hit in tagged["hits"])


def test_ask_answers_with_citations_that_name_keys(client: TestClient) -> None:
    body = client.get("/api/ask", params={"q": "which photo shows a cat?"}).json()
    assert body["citations"] and body["citations"][0]["source"] == "S1"
    cited = {c["key"] for c in body["citations"]}
    assert cited <= {hit["key"] for hit in body["hits"]} and CAT in cited
    assert "[S1]" in body["answer"]


def test_more_like_this_by_key_and_by_upload(client: TestClient) -> None:
    by_key = client.get("/api/similar", params={"key": CAT}).json()["hits"]
    assert by_key[0]["key"] == CAT_COPY
    upload = {"image": ("mine.jpg", jpeg_bytes(photo("chelsea")), "image/jpeg")}
    by_upload = client.post("/api/similar", files=upload).json()["hits"]
    assert by_upload[0]["key"] in (CAT, CAT_COPY)


def test_duplicates_prefixes_and_detail(client: TestClient) -> None:
    groups = client.get("/api/duplicates").json()["groups"]
    assert any({CAT, CAT_COPY} <= set(group["keys"]) for group in groups)
    assert "kitchen" in client.get("/api/prefixes").json()["prefixes"]
    detail = client.get("/api/image", params={"key": "signs/shopfront.jpg"}).json()
    assert "ACME" in detail["text"] and detail["partition"] == "signs"
    assert detail["assets"][-1] == "vector_index"


@pytest.mark.parametrize(
    ("path", "params", "status", "says"),
    [
        ("/api/search", {"q": "  "}, 422, "q:"),  # the schema says: some words
        ("/api/ask", {"q": ""}, 422, "q:"),
        ("/api/ask", {}, 422, "q: is required"),
        ("/api/search", {"q": "cat", "top_k": 0}, 422, "top_k"),  # the schema says: 1 to 100
        ("/api/search", {"q": "cat", "top_k": 101}, 422, "top_k"),
        ("/api/search", {"q": "cat", "top_k": "many"}, 422, "top_k"),
        ("/api/search", {"q": "cat", "date_from": "2024-02-30"}, 400, "YYYY-MM-DD"),
        ("/api/search", {"q": "cat", "prefix": "parties"}, 400, "Unknown prefix 'parties'"),
        ("/api/search", {"q": "cat", "mode": "fuzzy"}, 422, "mode"),  # the schema lists them
        ("/api/search", {"q": "cat", "sort": "size"}, 422, "sort"),
        ("/api/similar", {"key": "kitchen/nope.jpg"}, 404, "not in the index"),
        ("/api/similar", {"key": "../../../etc/passwd"}, 404, "not in the index"),
        ("/api/image", {"key": "kitchen/../../secret.jpg"}, 404, "not in the index"),
        ("/originals", {"key": "/etc/passwd"}, 404, "not in the index"),
        ("/thumbnails/..%2F..%2Fetc%2Fpasswd", {}, 404, ""),
        ("/thumbnails/" + "0" * 64 + ".jpg", {}, 404, ""),
        ("/api/duplicates", {"max_distance": 99}, 422, "max_distance"),
    ],
)
def test_bad_requests_get_a_4xx_with_one_line(
    client: TestClient, path: str, params: dict, status: int, says: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status
    assert says in one_line_error(response)


def test_uploads_that_are_not_images_or_too_large_are_refused(
    shared_library: IngestedLibrary, web_library: Library
) -> None:
    small = TestClient(
        create_app(shared_library.settings.replace(upload_max_mb=0.01), web_library),
        base_url="http://localhost",
    )
    text = small.post("/api/similar", files={"image": ("a.jpg", b"plain text", "image/jpeg")})
    assert text.status_code == 400 and "not an image" in one_line_error(text)
    big = small.post("/api/similar", files={"image": ("b.jpg", b"\xff" * 20_000, "image/jpeg")})
    assert big.status_code == 413 and "DAM_UPLOAD_MAX_MB" in one_line_error(big)


def test_the_token_guards_every_route_but_health(
    shared_library: IngestedLibrary, web_library: Library
) -> None:
    guarded = TestClient(
        create_app(shared_library.settings.replace(api_token=TOKEN), web_library),
        base_url="http://localhost",
    )
    assert guarded.get("/health").json()["status"] == "ok"
    for path in ("/api/search?q=cat", "/api/prefixes", "/thumbnails/x.jpg", "/openapi.json"):
        assert guarded.get(path).status_code == 401, path
    assert guarded.get("/", follow_redirects=False).headers["location"].startswith("/login")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/api/prefixes", headers=bearer).status_code == 200
    assert (
        guarded.get("/api/prefixes", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    refused = guarded.post("/login", data={"token": "wrong", "next": "/"})
    assert refused.status_code == 401
    guarded.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
    assert guarded.get("/api/prefixes").status_code == 200  # the cookie the form set


def test_text_from_images_is_shown_never_run(client: TestClient) -> None:
    detail = client.get("/image", params={"key": HOSTILE})
    assert detail.status_code == 200
    assert "<script>alert" not in detail.text and "<img src=x" not in detail.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail.text  # the name, shown as text
    # OCR keeps the words of the text, not its markup; shown as text either way
    assert "script alert" in detail.text
    page = client.get("/", params={"q": "script alert", "action": "search", "mode": "hybrid"})
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "<img src=x" not in page.text and "<script>" not in page.text


def test_page_states_for_an_empty_index_and_no_match(tmp_path, client: TestClient) -> None:
    empty = TestClient(
        create_app(Settings(data_dir=tmp_path / "nothing")), base_url="http://localhost"
    )
    page = empty.get("/", params={"q": "a cat"})
    assert page.status_code == 409 and "run <code>dam ingest</code>" in page.text
    assert not (tmp_path / "nothing" / "chroma").exists()
    none = client.get(
        "/", params={"q": "a cat", "date_from": "1990-01-01", "date_to": "1990-12-31"}
    )
    assert "Nothing in the library matches well" in none.text


# A real browser


@pytest.fixture(scope="module")
def server(shared_library: IngestedLibrary, web_library: Library) -> Iterator[str]:
    with running(create_app(shared_library.settings, web_library)) as address:
        yield address


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make installs it)")
def test_the_page_in_a_real_browser(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(server)
        page.get_by_label("Describe the image or ask a question").fill("which photo shows a cat?")
        page.keyboard.press("Enter")
        answer = page.locator(".answer")
        expect(answer).to_contain_text("[S1]")
        first = page.locator("#hit-1 img")
        expect(first).to_be_visible()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=first.element_handle()
        )
        page.screenshot(path=str(tmp_path / "answer.png"), full_page=True)

        answer.get_by_role("link", name="[S1]").click()
        assert page.url.endswith("#hit-1")
        liked = page.locator("#hit-1 .key").inner_text()
        assert liked in (CAT, CAT_COPY)  # the photo and its re-encoded copy tie
        page.locator("#hit-1").get_by_role("link", name="More like this").click()
        expect(page.locator("main h2").first).to_contain_text("Images like")
        expect(page.locator("#hit-1 .key")).to_have_text(({CAT, CAT_COPY} - {liked}).pop())

        page.get_by_label("Describe the image or ask a question").fill("a photo")
        page.get_by_label("Do").select_option("search")
        page.get_by_label("Prefix").select_option("kitchen")
        page.get_by_role("button", name="Search").click()
        keys = page.locator(".card .key").all_inner_texts()
        assert keys and all(key.startswith("kitchen/") for key in keys)

        page.locator("#hit-1 .key").click()
        expect(page.locator(".detail h2")).to_have_text(keys[0])
        expect(page.locator(".detail dd.caption")).not_to_be_empty()
        page.screenshot(path=str(tmp_path / "detail.png"), full_page=True)

        page.set_viewport_size({"width": 390, "height": 800})  # a phone
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        browser.close()


def test_an_unreachable_llm_is_said_and_the_images_still_shown(
    shared_library: IngestedLibrary, web_library: Library
) -> None:
    offline = shared_library.settings.replace(
        reasoner="openai",
        reasoner_base_url=f"http://127.0.0.1:{free_port()}/v1",  # nothing listens there
        reasoner_model="any-model",
        openai_api_key="sk-test",
        llm_timeout=2.0,
    )
    from dam_pipeline.reasoning.llm import OpenAICompatibleReasoner

    unreachable = OpenAICompatibleReasoner(
        "any-model", offline.reasoner_base_url, "sk-test", timeout=2.0, attempts=1
    )  # the real client, without the retries' back-off
    opened = Library(
        offline, index=web_library.index, embedder=web_library.embedder, reasoner=unreachable
    )
    client = TestClient(create_app(offline, opened), base_url="http://localhost")
    body = client.get("/api/ask", params={"q": "which photo shows a cat?"}).json()
    assert body["error"] and body["hits"]
    page = client.get("/", params={"q": "which photo shows a cat?"})
    assert "The language model could not answer" in page.text and 'id="hit-1"' in page.text


def test_dam_serve_starts_the_app_on_the_port_asked(shared_library: IngestedLibrary) -> None:
    port = free_port()
    env = {**os.environ, "DAM_DATA_DIR": str(shared_library.settings.data_dir)}
    dam = Path(sys.executable).parent / "dam"
    server = subprocess.Popen(
        [dam, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "dam serve died"
                time.sleep(0.2)
        assert health == {"status": "ok", "indexed": True}
    finally:
        server.terminate()
        out, _ = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out
