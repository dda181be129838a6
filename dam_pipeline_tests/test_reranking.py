"""The vision re-ranker against a local chat-completions server: it reorders the first
stage's candidates by the model's scores, shows both scores, caches them per (question,
image, model), and leaves the first stage's order when the model fails or talks nonsense."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from dam_pipeline.library import Library
from dam_pipeline.reranking import MalformedScores, parse_scores
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, write_library
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion


def _scores(method, path, body):
    """Relevance rising with the candidate's position: the reverse of the first stage."""
    content = body["messages"][0]["content"]
    count = sum(1 for part in content if part["type"] == "image_url")
    scores = [{"id": f"C{n}", "relevance": n} for n in range(1, count + 1)]
    return 200, chat_completion(json.dumps({"scores": scores}), model=body["model"]), {}


@pytest.fixture(scope="module")
def library_settings(tmp_path_factory) -> Settings:
    data = tmp_path_factory.mktemp("rerank") / "data"
    settings = Settings(data_dir=data, dagster_home=data / "dagster_home", workers=2)
    photos = {f"pets/{name}.jpg": name for name in ("chelsea", "coffee", "rocket", "astronaut")}
    write_library(settings.layout.library, photos)
    with dg.instance_for_test() as instance:
        ingest(settings, instance)
    return settings


@pytest.fixture
def server():
    with ScriptedHTTPServer(_scores) as running:
        yield running


def reranking(settings: Settings, server: ScriptedHTTPServer) -> Library:
    return Library(
        settings.replace(
            captioner="openai",
            captioner_model="vision",
            captioner_base_url=f"{server.url}/v1",
            reranker="vlm",
            rerank_top_n=4,
            prices=json.dumps({"openai/vision": {"per_request": 0.01}}),
        )
    )


def test_the_model_reorders_and_both_scores_are_shown(library_settings, server) -> None:
    first = Library(library_settings).search("a cat", top_k=4, min_score=-1)
    hits = reranking(library_settings, server).search("a cat", top_k=3, min_score=-1)
    assert [h.key for h in hits] == [h.key for h in reversed(first)][:3]
    assert [h.rerank_score for h in hits] == [4.0, 3.0, 2.0]
    assert {h.key: h.score for h in hits} == {h.key: h.score for h in first if h.key in
                                              {x.key for x in hits}}  # fmt: skip
    (request,) = server.requests
    images = [p for p in request["body"]["messages"][0]["content"] if p["type"] == "image_url"]
    assert len(images) == 4 and "a cat" in request["body"]["messages"][0]["content"][0]["text"]


def test_scores_are_cached_per_question_image_and_model(library_settings, server) -> None:
    library = reranking(library_settings, server)
    once = library.search("a rocket launch", top_k=3, min_score=-1)
    again = library.search("a rocket launch", top_k=3, min_score=-1)
    assert len(server.requests) == 1 and [h.key for h in again] == [h.key for h in once]
    answer = library.ask("a rocket launch, please", top_k=3, min_score=-1)
    assert answer.cost_usd == pytest.approx(0.01)  # one re-rank request, priced
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "reply",
    [
        (500, {"error": {"message": "overloaded"}}, {}),
        (200, chat_completion("I think the second one is best."), {}),
        (200, chat_completion(json.dumps({"scores": [{"id": "C9", "relevance": 3}]})), {}),
    ],
    ids=["server error", "prose", "unknown id"],
)
def test_a_failing_model_leaves_the_first_stage_order(library_settings, server, reply) -> None:
    server.script(reply, reply)  # both attempts
    first = Library(library_settings).search("a cup of coffee", top_k=3, min_score=-1)
    hits = reranking(library_settings, server).search("a cup of coffee", top_k=3, min_score=-1)
    assert [h.key for h in hits] == [h.key for h in first]
    assert all(h.rerank_score is None for h in hits)
    assert "could not re-rank" in hits.rerank_error


def test_scores_are_parsed_strictly() -> None:
    good = json.dumps({"scores": [{"id": "C2", "relevance": 1}, {"id": "C1", "relevance": 9.5}]})
    assert parse_scores(good, 2) == [9.5, 1.0]
    for bad in (
        "",
        "[]",
        json.dumps({"scores": [{"id": "C1", "relevance": 11}, {"id": "C2", "relevance": 1}]}),
        json.dumps({"scores": [{"id": "C1", "relevance": 1}, {"id": "C1", "relevance": 1}]}),
        json.dumps({"scores": [{"id": "C1", "relevance": True}, {"id": "C2", "relevance": 1}]}),
        json.dumps({"scores": [{"id": "C1", "relevance": 2}]}),
    ):
        with pytest.raises(MalformedScores):
            parse_scores(bad, 2)
    with pytest.raises(ValueError, match="DAM_RERANKER=vlm"):
        Settings(reranker="vlm")
