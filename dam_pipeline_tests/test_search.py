"""Search on real photos: dense, keyword and hybrid retrieval, filters, similar images and
near-duplicates, through the Python API and Dagster's query_job, with readable refusals."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from dam_pipeline import api
from dam_pipeline.captioning.ocr import tesseract_available
from dam_pipeline.definitions import build_definitions
from dam_pipeline.library import EmptyIndexError, QueryError
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import CAT, CAT_COPY, IngestedLibrary, photo

CATS = {CAT, CAT_COPY}


@pytest.fixture(scope="module")
def library(shared_library: IngestedLibrary) -> Settings:
    return shared_library.settings


def keys(hits) -> list[str]:
    return [hit.key for hit in hits]


def test_dense_search_finds_by_meaning(library: Settings) -> None:
    assert keys(api.search("a cat", settings=library))[0] in CATS
    assert keys(api.search("a cup of coffee", settings=library))[0] == "kitchen/coffee.jpg"


def test_keyword_search_finds_exact_words(library: Settings) -> None:
    found = api.search("motorcycle.jpg", mode="keyword", settings=library)
    assert keys(found)[0] == "street/motorcycle.jpg"
    hits = api.search("rocket", mode="keyword", settings=library)
    assert hits[0].key == "space ✨/rocket launch.jpg" and hits[0].matched == "keyword"


@pytest.mark.skipif(not tesseract_available(), reason="tesseract-ocr is not installed")
def test_words_on_a_sign_are_found_by_keyword_and_hybrid(library: Settings) -> None:
    assert keys(api.search("acme", mode="keyword", settings=library))[0] == "signs/shopfront.jpg"
    hybrid = api.search("ACME", mode="hybrid", top_k=3, settings=library)
    assert "signs/shopfront.jpg" in keys(hybrid[:2])
    assert next(h for h in hybrid if h.key == "signs/shopfront.jpg").matched in ("keyword", "both")
    assert "ACME" in next(h for h in hybrid if h.key == "signs/shopfront.jpg").text


def test_filters(library: Settings) -> None:
    only_pets = api.search("a cup of coffee", prefixes=["pets & animals"], settings=library)
    assert set(keys(only_pets)) <= CATS
    assert set(keys(api.search("an animal", tags=["cat"], top_k=10, settings=library))) == CATS
    in_2019 = api.search(
        "a photo", date_from=date(2019, 1, 1), date_to=date(2019, 12, 31), settings=library
    )
    assert keys(in_2019) == ["kitchen/coffee.jpg"]  # EXIF date taken, not the file's date
    assert api.search("a cup of coffee", min_score=0.99, settings=library) == []


def test_the_search_mode_setting_is_the_default(library: Settings) -> None:
    keyword_default = library.replace(search_mode="keyword")
    assert api.search("rocket", settings=keyword_default)[0].matched == "keyword"
    assert api.search("rocket", settings=library)[0].matched == "dense"


def test_similar_images_by_key_and_by_a_new_file(library: Settings, tmp_path) -> None:
    like_chelsea = api.similar(key=CAT, settings=library)
    assert like_chelsea[0].key == CAT_COPY
    assert CAT not in keys(like_chelsea)
    new_file = tmp_path / "my coffee.png"
    photo("coffee").rotate(3).save(new_file)
    assert api.similar(image=new_file, settings=library)[0].key == "kitchen/coffee.jpg"
    assert api.similar(image=new_file.read_bytes(), settings=library)[0].key == "kitchen/coffee.jpg"


def test_near_duplicates_of_a_reencoded_copy(library: Settings) -> None:
    groups = api.duplicates(settings=library)
    assert [group.keys for group in groups] == [sorted(CATS)]
    assert groups[0].similarity >= 0.9
    assert api.duplicates(prefixes=["kitchen"], settings=library) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: api.search("  ", settings=s), "question is empty"),
        (lambda s: api.search("cat", top_k=0, settings=s), "between 1 and 100"),
        (lambda s: api.search("cat", top_k=101, settings=s), "between 1 and 100"),
        (lambda s: api.search("cat", prefixes=["parties"], settings=s), "Unknown prefix 'parties'"),
        (lambda s: api.search("cat", mode="fuzzy", settings=s), "Unknown search mode"),
        (lambda s: api.similar(key="pets & animals/nope.jpg", settings=s), "not in the index"),
        (lambda s: api.similar(settings=s), "either the key"),
        (lambda s: api.duplicates(max_distance=99, settings=s), "from 0 to 32"),
        (
            lambda s: api.search(
                "cat", date_from=date(2020, 1, 2), date_to=date(2020, 1, 1), settings=s
            ),
            "date range is empty",
        ),
    ],
)
def test_bad_requests_are_refused_in_one_line(library: Settings, call, message: str) -> None:
    with pytest.raises(QueryError, match=message) as refused:
        call(library)
    assert "\n" not in str(refused.value)


def test_unknown_prefix_lists_the_known_ones(library: Settings) -> None:
    with pytest.raises(QueryError) as refused:
        api.search("cat", prefixes=["parties"], settings=library)
    assert "'kitchen'" in str(refused.value) and "'space ✨'" in str(refused.value)
    assert api.prefixes(settings=library) == sorted(
        ["kitchen", "pets & animals", "posters", "signs", "space ✨", "street"]
    )


def test_an_empty_index_says_so_and_creates_nothing(tmp_path) -> None:
    empty = Settings(data_dir=tmp_path / "nothing-here")
    for call in (
        lambda: api.search("a cat", settings=empty),
        lambda: api.ask("a cat?", settings=empty),
        lambda: api.duplicates(settings=empty),
    ):
        with pytest.raises(EmptyIndexError, match="run `dam ingest`"):
            call()
    assert not (tmp_path / "nothing-here").exists()


def run_query(settings: Settings, config: dict) -> dg.ExecuteInProcessResult:
    with dg.instance_for_test() as instance:
        job = build_definitions(settings).resolve_job_def("query_job")
        return job.execute_in_process(
            instance=instance,
            run_config=config,
            raise_on_error=False,
        )


@pytest.mark.parametrize(
    ("mode", "extra", "expected"),
    [
        ("search", {"question": "a cup of coffee"}, "kitchen/coffee.jpg"),
        ("ask", {"question": "a cup of coffee"}, "kitchen/coffee.jpg"),
        ("similar", {"key": CAT}, CAT_COPY),
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


def test_query_job_uses_the_configured_search_mode(library: Settings) -> None:
    result = run_query(
        library.replace(search_mode="keyword"), {"mode": "search", "question": "rocket"}
    )
    assert result.output_for_node("answer_question")["hits"][0]["matched"] == "keyword"


def test_query_job_lists_near_duplicate_groups(library: Settings) -> None:
    groups = run_query(library, {"mode": "duplicates"}).output_for_node("answer_question")["groups"]
    assert [g["keys"] for g in groups] == [sorted(CATS)]


def test_query_job_refuses_a_bad_request_in_one_line(library: Settings) -> None:
    result = run_query(library, {"mode": "search", "question": "cat", "prefixes": ["parties"]})
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "Unknown prefix 'parties'" in failure.event_specific_data.error_display_string


def test_query_job_config_refuses_unknown_choices_before_launch(library: Settings) -> None:
    with pytest.raises(dg.DagsterInvalidConfigError):
        run_query(library, {"mode": "serch", "question": "cat"})


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"question": "   "}, "The question is empty"),
        ({"mode": "search", "question": ""}, "The question is empty"),
        ({"mode": "similar"}, "exactly one of key or image_path"),
        ({"question": "cat", "date_from": "2024-13-01"}, "date_from must be a date"),
    ],
)
def test_query_job_refuses_a_query_it_cannot_answer_before_a_run_exists(
    library: Settings, config: dict, reason: str
) -> None:
    job = build_definitions(library).resolve_job_def("query_job")
    with dg.instance_for_test() as instance:
        with pytest.raises(dg.DagsterUserCodeExecutionError) as refused:
            job.execute_in_process(instance=instance, run_config=config)
        assert reason in str(refused.value.__cause__)
        assert instance.get_runs() == []


@pytest.mark.parametrize(
    ("question", "subject"),
    [
        ("which photos show food?", "food"),
        ("Do we have any pictures of the beach?", "beach"),
        ("a photo of a dog", "dog"),
        ("Is there a rocket?", "rocket"),
        ("A man riding a horse", "A man riding a horse"),  # a description stays as written
        ("Some people standing in a field", "Some people standing in a field"),
        ("photos", "photos"),  # nothing would be left
    ],
)
def test_the_question_is_embedded_without_the_words_that_ask_for_a_picture(
    question: str, subject: str
) -> None:
    from dam_pipeline.retrieval.search import focus_question

    assert focus_question(question) == subject


def test_an_unrelated_question_is_not_answered_with_the_closest_images(library: Settings) -> None:
    answer = api.ask("which photos show food?", settings=library)
    assert not {hit.key for hit in answer.cited_hits} & {CAT, "space ✨/hubble deep field.jpg"}
    assert all(hit.score >= library.min_score for hit in answer.sources if hit.matched == "dense")
    cat = api.ask("which photo shows a cat?", settings=library)
    assert {hit.key for hit in cat.cited_hits} & CATS


def test_hits_and_answers_show_their_images_in_a_notebook(library: Settings) -> None:
    hits = api.search("a cup of coffee", top_k=2, settings=library)
    grid = hits._repr_html_()
    assert grid.count("data:image/jpeg;base64,") == len(hits) == 2
    assert "kitchen/coffee.jpg" in hits[0]._repr_html_()
    assert f"· {hits[0].relevance:.2f}" in grid  # the figure the results are ordered by
    assert "thumbnail" not in hits[0].to_dict()  # the data stays plain
    answer = api.ask("which photo shows a cat?", settings=library)
    shown = answer._repr_html_()
    assert "<b>[S1]</b>" in shown and "data:image/jpeg;base64," in shown
    hostile = api.search("script alert", mode="keyword", settings=library)
    assert "<img src=x" not in hostile._repr_html_()


def test_a_vision_reasoner_gets_small_jpegs_of_the_top_images(library: Settings) -> None:
    from dataclasses import replace

    from dam_pipeline.library import Library

    opened = Library(library)
    hits = opened.search("a cup of coffee", top_k=2)
    gone = replace(hits[1], normalized_hash="0" * 64)  # its normalized image was removed
    images = opened.thumbnails([hits[0], gone], side=64)
    assert set(images) == {1} and images[1][:2] == b"\xff\xd8"
