"""Places: positions read defensively from EXIF GPS, named offline, filtered and listed."""

from __future__ import annotations

import io
import json
import math
from fractions import Fraction
from pathlib import Path

import dagster as dg
import pytest
from PIL import ExifTags, Image

from dam_pipeline.places.position import gps_position
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, photo, write_library


def _dms(value: float) -> tuple:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round((value - degrees - minutes / 60) * 3600 * 100), 100)
    return (Fraction(degrees), Fraction(minutes), seconds)


def geotagged(name: str, lat: float, lon: float) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.IFD.GPSInfo] = {
        1: "N" if lat >= 0 else "S", 2: _dms(lat), 3: "E" if lon >= 0 else "W", 4: _dms(lon),
    }  # fmt: skip
    out = io.BytesIO()
    photo(name).save(out, format="JPEG", quality=85, exif=exif)
    return out.getvalue()


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ({1: "N", 2: (48, 51, 30.24), 3: "E", 4: (2, 17, 40.2)}, (48.858400, 2.294500)),
        ({1: b"S", 2: ((23, 1), (33, 1), (0, 1)), 3: b"W", 4: (46.6333,)}, None),
        ({1: "S", 2: ((23, 1), (33, 1), (0, 1)), 3: "W", 4: ((46, 1), (38, 1), (0, 1))},
         (-23.55, -46.633333)),
        ({1: "N", 2: ((48, 0), (51, 1), (30, 1)), 3: "E", 4: (2, 17, 40)}, None),  # 0 denominator
        ({1: "N", 2: (float("nan"), 0, 0), 3: "E", 4: (2, 17, 40)}, None),
        ({1: "N", 2: (95, 0, 0), 3: "E", 4: (2, 17, 40)}, None),  # out of range
        ({1: "N", 2: (48, 75, 0), 3: "E", 4: (2, 17, 40)}, None),  # 75 minutes
        ({2: (48, 51, 30), 3: "E", 4: (2, 17, 40)}, None),  # no reference
        ({1: "N", 2: (0, 0, 0), 3: "E", 4: (0, 0, 0)}, None),  # a bare (0, 0)
        ({1: "N", 2: (0, 0, 0), 3: "E", 4: (0, 0, 0), 6: (12, 1)}, (0.0, 0.0)),  # with altitude
        ({1: "N", 2: "garbage", 3: "E", 4: None}, None),
    ],
)  # fmt: skip
def test_positions_are_read_defensively(block: dict, expected: tuple | None) -> None:
    found = gps_position(block)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert math.isclose(found["lat"], expected[0], abs_tol=1e-5)
        assert math.isclose(found["lon"], expected[1], abs_tol=1e-5)


LIBRARY = {
    "trip/eiffel.jpg": geotagged("rocket", 48.8584, 2.2945),  # in Vanves' square, near Paris
    "trip/sao paulo.jpg": geotagged("coffee", -23.55, -46.63),
    "trip/lisbon.jpg": geotagged("chelsea", 38.7223, -9.1393),
}


def _library() -> dict[str, bytes | str]:
    files: dict[str, bytes | str] = dict(LIBRARY)
    files["trip/no gps.jpg"] = "astronaut"
    return files


def _search(dam, settings: Settings, *args: str) -> list[dict]:
    ran = dam(settings, "search", "a photo", "--json", "-k", "20", *args)
    assert ran.code == 0, ran.err
    return json.loads(ran.out)


def test_photos_are_found_by_place_and_listed(
    settings: Settings, instance: dg.DagsterInstance, dam
) -> None:
    write_library(settings.layout.library, _library())
    ingest(settings, instance)
    assert {h["key"] for h in _search(dam, settings, "--place", "Paris")} == {"trip/eiffel.jpg"}
    assert {h["key"] for h in _search(dam, settings, "--place", "sao paulo")} == {
        "trip/sao paulo.jpg"
    }
    both = _search(dam, settings, "--place", "Portugal", "--place", "FRANCE")
    assert {h["key"] for h in both} == {"trip/lisbon.jpg", "trip/eiffel.jpg"}
    near = _search(dam, settings, "--near", "38.72,-9.14,10")
    assert [h["key"] for h in near] == ["trip/lisbon.jpg"]
    lisbon = near[0]["place"]
    assert lisbon["country"] == "Portugal" and lisbon["country_code"] == "PT"
    assert math.isclose(lisbon["lat"], 38.7223, abs_tol=1e-3)
    # keyword search finds the place's name
    ran = dam(settings, "search", "Lisbon", "--mode", "keyword", "--json")
    assert [h["key"] for h in json.loads(ran.out)] == ["trip/lisbon.jpg"]
    # a place named in the question becomes the filter; a lower-case word does not
    ran = dam(settings, "search", "a cat in Portugal", "--json", "-k", "20")
    assert [h["key"] for h in json.loads(ran.out)] == ["trip/lisbon.jpg"]
    ran = dam(settings, "search", "a photo taken in paris", "--json", "-k", "20")
    assert len(json.loads(ran.out)) > 1  # "paris" written in lower case: no filter
    # answers say where, and count the photos of a place
    answered = dam(settings, "ask", "a cat in Portugal")
    assert "(taken in Lisbon, Portugal) [S1]" in answered.out, answered.out
    assert dam(settings, "ask", "how many photos from France?").out.startswith(
        "1 photo was taken in France."
    )
    listed = json.loads(dam(settings, "places", "--json").out)
    assert {c["country"]: c["photos"] for c in listed} == {
        "France": 1, "Brazil": 1, "Portugal": 1,
    }  # fmt: skip
    bad = dam(settings, "search", "a photo", "--near", "91,0,5")
    assert bad.code == 2 and "latitude" in bad.err
    # the normalized copy (and so every thumbnail) carries no EXIF, so no position
    from dam_pipeline import components

    state = components.open_state(settings)
    (record,) = [r for r in state.manifests.read("normalized_images", "trip") if "lisbon" in r.key]
    assert record.exif["gps"]["lat"] == pytest.approx(38.7223, abs=1e-3)
    copy = Image.open(io.BytesIO(state.objects.read_bytes(record.normalized_hash)))
    assert not copy.getexif().get_ifd(ExifTags.IFD.GPSInfo)


def test_coarse_keeps_no_coordinates_and_off_no_place(
    settings: Settings, instance: dg.DagsterInstance, dam
) -> None:
    from dam_pipeline import components

    write_library(settings.layout.library, _library())
    state = components.open_state(settings)

    def stored_text() -> str:  # every manifest of the partition, as stored
        return "".join(
            json.dumps([r.exif for r in state.manifests.read(asset, "trip") or ()])
            for asset in ("normalized_images", "captions")
        )

    ingest(settings, instance)
    assert "38.72" in stored_text()  # on: the position is kept
    ran = ingest(settings.replace(location="coarse"), instance)["trip"]
    assert ran["captions"]["computed"] == 0  # no model call
    hits = _search(dam, settings, "--place", "Portugal")
    assert hits[0]["place"]["country"] == "Portugal" and "lat" not in hits[0]["place"]
    assert "38.72" not in stored_text() and "Portugal" in stored_text()
    ran = ingest(settings.replace(location="off"), instance)["trip"]
    assert ran["captions"]["computed"] == 0
    assert _search(dam, settings, "--place", "Portugal") == []
    assert all(h["place"] is None for h in _search(dam, settings))
    assert "Portugal" not in stored_text() and "38.72" not in stored_text()
    ingest(settings, instance)  # on again: the positions are read again from the files
    assert [h["key"] for h in _search(dam, settings, "--place", "Portugal")] == ["trip/lisbon.jpg"]


@pytest.mark.parametrize(
    ("question", "places", "rest"),
    [
        ("dogs on the beach in Portugal", ["Portugal"], "dogs on the beach"),
        ("a bath in the hotel", [], "a bath in the hotel"),
        ("the beach in Bath", ["Bath"], "the beach"),
        ("Bath time for the kids", [], "Bath time for the kids"),
        ("dinner in Lisbon and Porto", ["Lisbon", "Porto"], "dinner"),
        ("photos from Sao Paulo", ["São Paulo"], "photos"),
        ("street food in são paulo", [], "street food in são paulo"),
    ],
)
def test_places_in_questions_are_written_as_places(question, places, rest) -> None:
    from dam_pipeline.retrieval.place_filter import places_in_question

    cities = ["Lisbon", "Porto", "Bath", "São Paulo", "Nice"]
    found, left = places_in_question(question, cities, ["Portugal", "England", "Brazil"])
    assert (sorted(found), left) == (sorted(places), rest)


def test_the_page_and_the_api_filter_and_show_places(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    from fastapi.testclient import TestClient

    from dam_pipeline.web.app import create_app

    write_library(settings.layout.library, _library())
    ingest(settings, instance)
    client = TestClient(create_app(settings), base_url="http://127.0.0.1")
    hits = client.get("/api/search", params={"q": "a photo", "place": "são paulo"}).json()
    assert [h["key"] for h in hits["hits"]] == ["trip/sao paulo.jpg"]
    assert hits["hits"][0]["place"]["country"] == "Brazil"
    near = client.get("/api/search", params={"q": "a photo", "near": "48.85,2.35,20"}).json()
    assert [h["key"] for h in near["hits"]] == ["trip/eiffel.jpg"]
    assert client.get("/api/search", params={"q": "x", "near": "a,b,c"}).status_code == 400
    assert {c["country"] for c in client.get("/api/places").json()["places"]} == {
        "France", "Brazil", "Portugal",
    }  # fmt: skip
    page = client.get("/", params={"q": "a photo", "action": "search", "place": "Portugal"})
    assert page.status_code == 200 and "In Lisbon, Portugal" in page.text
    assert "trip/eiffel.jpg" not in page.text
    detail = client.get("/image", params={"key": "trip/eiffel.jpg"}).text
    assert "(near Paris)" in detail


def test_a_video_is_placed_by_its_container_location(
    settings: Settings, instance: dg.DagsterInstance, dam
) -> None:
    from dam_pipeline.video.write import write_clip

    clips = settings.layout.library / "clips"
    lisbon = "+38.7223-009.1393/"  # ISO 6709, as a phone writes it
    write_clip(clips / "tram.mp4", [photo("coffee"), photo("rocket")], location=lisbon)
    write_clip(clips / "home.mp4", [photo("chelsea")], seconds_each=1.5)
    ingest(settings, instance)
    hits = _search(dam, settings, "--place", "Lisbon")
    assert hits and {h["video_key"] for h in hits} == {"clips/tram.mp4"}
    assert all(h["place"]["country"] == "Portugal" for h in hits)


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make installs it)")
def test_the_map_draws_the_photos_offline_in_a_real_browser(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    from playwright.sync_api import sync_playwright

    from dam_pipeline.web.app import create_app
    from dam_pipeline.web.server import running

    write_library(settings.layout.library, _library())
    ingest(settings, instance)
    with running(create_app(settings)) as address, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page()
        outside: list[str] = []
        page.on(
            "request",
            lambda r: outside.append(r.url) if not r.url.startswith(address) else None,
        )
        page.goto(f"{address}/map")
        page.wait_for_selector("#map[data-points='3']", timeout=15_000)
        assert page.locator("path.photo-point").count() == 3
        page.wait_for_selector(".leaflet-land-pane path")  # the outline, from the package
        assert "Portugal" in page.locator(".facets").inner_text()
        browser.close()
    assert outside == []  # no tile server, no CDN: nothing left the machine
