"""Search on real photos: dense, keyword and hybrid retrieval, filters, similar images and
near-duplicates, through the Python API, the CLI and Dagster's query_job."""

from __future__ import annotations

import io
import json
from datetime import date

import pytest
from PIL import Image, ImageDraw, ImageFont

from dam_pipeline import api
from dam_pipeline.captioning.ocr import tesseract_available
from dam_pipeline.definitions import build_definitions
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import jpeg_bytes, photo, write_library
from dam_pipeline_tests.test_cli import run_dam
from dam_pipeline_tests.test_pipeline import ingest


def sign(text: str) -> bytes:
    image = Image.new("RGB", (1000, 320), "white")
    ImageDraw.Draw(image).text((40, 100), text, fill="black", font=ImageFont.load_default(size=90))
    return jpeg_bytes(image)


def dated(name: str, when: str) -> bytes:
    exif = Image.Exif()
    exif[0x8769] = {0x9003: when}  # Exif IFD: DateTimeOriginal
    return jpeg_bytes(photo(name), exif=exif.tobytes())


def reencoded(name: str) -> bytes:
    image = Image.open(io.BytesIO(jpeg_bytes(photo(name))))
    smaller = image.resize((image.width * 3 // 4, image.height * 3 // 4))
    out = io.BytesIO()
    smaller.save(out, format="JPEG", quality=55)
    return out.getvalue()


LIBRARY = {
    "pets/chelsea.jpg": "chelsea",
    "pets/chelsea-copy.jpg": reencoded("chelsea"),
    "kitchen/coffee.jpg": dated("coffee", "2019:06:01 08:30:00"),
    "street/motorcycle.jpg": "motorcycle_left",
    "space/rocket.jpg": "rocket",
    "signs/shopfront.jpg": sign("ACME ROASTERS"),
}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Settings:
    import dagster as dg

    root = tmp_path_factory.mktemp("search") / "data"
    settings = Settings(data_dir=root, source=str(root / "library"), chroma_path=root / "chroma")
    write_library(settings.layout.library, LIBRARY)
    with dg.instance_for_test() as instance:
        ingest(settings, instance)
    return settings


def keys(hits) -> list[str]:
    return [hit.key for hit in hits]


def test_dense_search_finds_by_meaning(library: Settings) -> None:
    assert keys(api.search("a cat", settings=library))[0] in (
        "pets/chelsea.jpg",
        "pets/chelsea-copy.jpg",
    )
    assert keys(api.search("a cup of coffee", settings=library))[0] == "kitchen/coffee.jpg"


def test_keyword_search_finds_exact_words(library: Settings) -> None:
    assert (
        keys(api.search("motorcycle.jpg", mode="keyword", settings=library))[0]
        == "street/motorcycle.jpg"
    )
    hits = api.search("rocket", mode="keyword", settings=library)
    assert hits[0].key == "space/rocket.jpg" and hits[0].matched == "keyword"


@pytest.mark.skipif(not tesseract_available(), reason="tesseract-ocr is not installed")
def test_words_on_a_sign_are_found_by_keyword_and_hybrid(library: Settings) -> None:
    assert keys(api.search("acme", mode="keyword", settings=library))[0] == "signs/shopfront.jpg"
    hybrid = api.search("ACME", mode="hybrid", top_k=3, settings=library)
    assert "signs/shopfront.jpg" in keys(hybrid[:2])
    assert next(h for h in hybrid if h.key == "signs/shopfront.jpg").matched in ("keyword", "both")


def test_filters(library: Settings) -> None:
    only_pets = api.search("a cup of coffee", prefixes=["pets"], settings=library)
    assert set(keys(only_pets)) <= {"pets/chelsea.jpg", "pets/chelsea-copy.jpg"}
    assert set(keys(api.search("an animal", tags=["cat"], top_k=10, settings=library))) == {
        "pets/chelsea.jpg",
        "pets/chelsea-copy.jpg",
    }
    in_2019 = api.search(
        "a photo", date_from=date(2019, 1, 1), date_to=date(2019, 12, 31), settings=library
    )
    assert keys(in_2019) == ["kitchen/coffee.jpg"]  # EXIF date taken, not the file's date
    assert api.search("a cup of coffee", min_score=0.99, settings=library) == []


def test_similar_images_by_key_and_by_a_new_file(library: Settings, tmp_path) -> None:
    like_chelsea = api.similar(key="pets/chelsea.jpg", settings=library)
    assert like_chelsea[0].key == "pets/chelsea-copy.jpg" and "pets/chelsea.jpg" not in keys(
        like_chelsea
    )
    new_file = tmp_path / "my coffee.png"
    photo("coffee").rotate(3).save(new_file)
    assert api.similar(image=new_file, settings=library)[0].key == "kitchen/coffee.jpg"
    with pytest.raises(ValueError, match="not in the index"):
        api.similar(key="pets/nope.jpg", settings=library)


def test_near_duplicates_of_a_reencoded_copy(library: Settings) -> None:
    groups = api.duplicates(settings=library)
    assert [group.keys for group in groups] == [["pets/chelsea-copy.jpg", "pets/chelsea.jpg"]]
    assert groups[0].similarity >= 0.9


def test_cli_similar_duplicates_and_empty_results(library: Settings) -> None:
    similar = run_dam(library, "similar", "--key", "pets/chelsea.jpg", "--json", "-k", "1")
    assert similar.returncode == 0, similar.stderr
    assert json.loads(similar.stdout)[0]["key"] == "pets/chelsea-copy.jpg"
    dupes = run_dam(library, "duplicates", "--json")
    assert json.loads(dupes.stdout)[0]["keys"] == ["pets/chelsea-copy.jpg", "pets/chelsea.jpg"]
    nothing = run_dam(library, "search", "a cup of coffee", "--min-score", "0.99")
    assert nothing.returncode == 0 and "No image matches" in nothing.stdout


def run_query(settings: Settings, config: dict):
    import dagster as dg

    with dg.instance_for_test() as instance:
        job = build_definitions(settings).resolve_job_def("query_job")
        return job.execute_in_process(
            instance=instance, run_config={"ops": {"answer_question": {"config": config}}}
        )


@pytest.mark.parametrize(
    ("mode", "extra", "expected"),
    [
        ("search", {"question": "a cup of coffee"}, "kitchen/coffee.jpg"),
        ("ask", {"question": "a cup of coffee"}, "kitchen/coffee.jpg"),
        ("similar", {"key": "pets/chelsea.jpg"}, "pets/chelsea-copy.jpg"),
    ],
)
def test_query_job_modes(library: Settings, mode: str, extra: dict, expected: str) -> None:
    result = run_query(library, {"mode": mode, "top_k": 3, **extra})
    output = result.output_for_node("answer_question")
    assert output["hits"][0]["key"] == expected
    (metadata,) = [
        e.event_specific_data.metadata
        for e in result.all_events
        if e.event_type_value == "STEP_OUTPUT"
    ]
    markdown = metadata["answer"].value
    assert expected in markdown and "data:image/jpeg;base64" in markdown


def test_query_job_lists_near_duplicate_groups(library: Settings) -> None:
    groups = run_query(library, {"mode": "duplicates"}).output_for_node("answer_question")["groups"]
    assert [g["keys"] for g in groups] == [["pets/chelsea-copy.jpg", "pets/chelsea.jpg"]]
