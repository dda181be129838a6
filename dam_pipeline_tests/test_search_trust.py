"""Search people can trust: photos dated by when they were taken or modified (never by a
copy's inode change), sorted by date on request; an answer that finds nothing says so and
shows the closest images apart; counting questions get a number; one relevance figure whose
order is the result order in every mode."""

from __future__ import annotations

import os
import shutil
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from dam_pipeline.library import Library
from dam_pipeline.settings import Settings
from dam_pipeline.web import create_app
from dam_pipeline_tests.conftest import dated, ingest, jpeg_bytes, photo

YEARS = {"p/old.jpg": 2019, "p/middle.jpg": 2021, "p/new.jpg": 2023}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Library:
    """Three photos whose files were modified in 2019, 2021 and 2023 and then copied in
    (the copies' ctime is today), one dated by its EXIF with its time zone, and coffee."""
    import dagster as dg

    root = tmp_path_factory.mktemp("trust")
    settings = Settings(data_dir=root / "data")
    staging = root / "camera"
    staging.mkdir()
    library_dir = settings.layout.library / "p"
    library_dir.mkdir(parents=True)
    for (key, year), name in zip(YEARS.items(), ("chelsea", "coffee", "rocket"), strict=True):
        original = staging / key.split("/")[1]
        original.write_bytes(jpeg_bytes(photo(name)))
        stamp = datetime(year, 6, 14, 13, 2).timestamp()
        os.utime(original, (stamp, stamp))
        shutil.copy2(original, library_dir / original.name)  # keeps mtime; ctime is now
    (library_dir / "zoned.jpg").write_bytes(dated("astronaut", "2020:02:29 23:30:00", "+02:00"))
    for n, scale in enumerate((1.0, 0.9, 0.8, 0.7)):
        cup = photo("coffee").resize((int(400 * scale), int(300 * scale)))
        (settings.layout.library / "food").mkdir(exist_ok=True)
        (settings.layout.library / "food" / f"cup{n}.jpg").write_bytes(jpeg_bytes(cup))
    with dg.instance_for_test() as instance:
        ingest(settings, instance)
    return Library(settings)


def test_a_copied_photo_keeps_its_date_and_is_found_by_it(library: Library) -> None:
    found = library.search(
        "a photo", top_k=10, min_score=-1, date_from=datetime(2021, 1, 1).date(),
        date_to=datetime(2021, 12, 31).date(), prefixes=["p"],
    )  # fmt: skip
    assert [hit.key for hit in found] == ["p/middle.jpg"]
    zoned = library.detail("p/zoned.jpg")
    assert zoned.date_taken == "2020-02-29T23:30:00+02:00"  # with the camera's zone


def test_dates_are_shown_as_dates(library: Library) -> None:
    client = TestClient(create_app(library.settings, library), base_url="http://localhost")
    page = client.get("/image", params={"key": "p/middle.jpg"}).text
    assert "14 Jun 2021, 13:02" in page and "T13:02" not in page
    zoned = client.get("/image", params={"key": "p/zoned.jpg"}).text
    assert "29 Feb 2020, 23:30 UTC+02:00 (taken)" in zoned


def test_sort_by_date_orders_the_relevant_images_newest_first(library: Library) -> None:
    options = {"top_k": 10, "min_score": -1, "prefixes": ["p"]}
    by_date = library.search("a photo", sort="date", **options)
    assert [hit.key for hit in by_date] == ["p/new.jpg", "p/middle.jpg", "p/zoned.jpg", "p/old.jpg"]
    assert {hit.key for hit in by_date} == {hit.key for hit in library.search("a photo", **options)}
    client = TestClient(create_app(library.settings, library), base_url="http://localhost")
    api = client.get("/api/search", params={"q": "a photo", "sort": "date", "prefix": "p"})
    dates = [hit["date"] for hit in api.json()["hits"]]
    assert len(dates) >= 2 and dates == sorted(dates, reverse=True)


def test_an_answer_that_finds_nothing_shows_the_closest_images_apart(library: Library) -> None:
    lenient = library.settings.replace(min_score=-1.0)  # every image passes the search
    client = TestClient(create_app(lenient, Library(lenient)), base_url="http://localhost")
    page = client.get("/", params={"q": "quantum chromodynamics lattice"})
    assert "well enough" in page.text  # the answer
    assert "below the threshold" in page.text and 'class="source"' not in page.text
    answered = client.get("/", params={"q": "a cup of coffee"})
    assert 'class="source"' in answered.text  # a real answer keeps its [S1] badges


def test_a_counting_question_gets_a_number_beyond_top_k(library: Library) -> None:
    answer = library.ask("How many photos show a cup of coffee?", top_k=2)
    wide = library.search("a cup of coffee", top_k=100, mode="dense")
    expected = sum(1 for hit in wide if hit.similarity >= 0.35)
    assert expected > 2  # more than the two sources the answer cites
    assert answer.text.startswith(f"{expected} images match (caption similarity at least 0.35")


@pytest.mark.parametrize("mode", ["dense", "hybrid", "keyword"])
def test_the_relevance_shown_is_the_order_of_the_results(library: Library, mode: str) -> None:
    hits = library.search("coffee cup", top_k=8, min_score=-1, mode=mode)
    assert len(hits) >= 3
    relevance = [hit.relevance for hit in hits]
    assert relevance == sorted(relevance, reverse=True) and relevance[0] == 1.0
    if mode == "keyword":
        assert all(hit.bm25 is not None and hit.similarity is None for hit in hits)
    else:
        assert all(hit.similarity is not None for hit in hits)


class RecordingLibrary(Library):
    """The library, keeping the request each call of ``find`` received."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.requests: list = []

    def find(self, request):
        self.requests.append(request)
        return super().find(request)


def test_every_front_end_builds_the_same_request_with_the_same_defaults(
    library: Library,
) -> None:
    from dam_pipeline import api
    from dam_pipeline.cli import _request, build_parser
    from dam_pipeline.defs.jobs import QueryConfig
    from dam_pipeline.search_request import DEFAULT_TOP_K, SearchRequest

    wanted = SearchRequest.of("a cup", tags=["cup"], date_from="2021-01-01", sort="date")
    assert wanted.top_k == DEFAULT_TOP_K and wanted.prefixes == ()
    cli = build_parser().parse_args(
        ["search", "a cup", "--tag", "cup", "--from", "2021-01-01", "--sort", "date"]
    )
    assert _request(cli) == wanted
    job = QueryConfig(mode="search", question="a cup", tags=["cup"], date_from="2021-01-01",
                      sort="date")  # fmt: skip
    assert job.request() == wanted
    recording = RecordingLibrary(library.settings)
    web = TestClient(create_app(recording.settings, recording), base_url="http://localhost")
    web.get("/api/search", params={"q": "a cup", "tag": "cup", "date_from": "2021-01-01",
                                   "sort": "date"})  # fmt: skip
    web.get("/", params={"q": "a cup", "tag": "cup", "date_from": "2021-01-01",
                         "sort": "date", "action": "search"})  # fmt: skip
    assert recording.requests == [wanted, wanted]
    found = api.search("a cup", tags=["cup"], date_from=datetime(2021, 1, 1).date(),
                       sort="date", settings=library.settings)  # fmt: skip
    assert [h.key for h in found] == [h.key for h in library.find(wanted)]
    bad = web.get("/api/search", params={"q": "cup", "date_from": "2024-02-30"})
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.json()["error"]
