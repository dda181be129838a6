"""What paid providers cost: usage as a local chat-completions server reports it, priced by
DAM_PRICES, in the materializations' metadata, in `dam cost --json` and in answers; the
per-run budget defers what it does not cover, and the next run finishes it."""

from __future__ import annotations

import json

import pytest

from dam_pipeline.costs import Price, PriceError, PriceTable, RunBudget, Usage
from dam_pipeline.reasoning.llm import OpenAICompatibleReasoner
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, write_library
from dam_pipeline_tests.servers import ScriptedHTTPServer, chat_completion

CAPTION = json.dumps({"description": "A tabby cat on a floor.", "tags": ["cat"], "text": ""})
PROMPT_TOKENS, COMPLETION_TOKENS = 1200, 150
PRICES = {
    "openai/llava": {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "per_image": 0.001},
    "openai/reasoner": {"input_per_mtok": 3.0, "output_per_mtok": 5.0},
}
EACH = PROMPT_TOKENS * 1.0 / 1e6 + COMPLETION_TOKENS * 2.0 / 1e6 + 0.001
"""One caption's price at PRICES: 0.0025 USD."""


def _reply(method, path, body):
    reply = chat_completion(CAPTION, model=body["model"])
    if body["model"] == "reasoner":
        reply = chat_completion("A cat [S1].", model="reasoner")
    reply["usage"] = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }
    return 200, reply, {}


@pytest.fixture
def server():
    with ScriptedHTTPServer(_reply) as running:
        yield running


def paid(settings: Settings, server: ScriptedHTTPServer, **more) -> Settings:
    return settings.replace(
        captioner="openai",
        captioner_model="llava",
        captioner_base_url=f"{server.url}/v1",
        prices=json.dumps(PRICES),
        **more,
    )


PHOTOS = {f"pets/{n}.jpg": n for n in ("chelsea", "coffee", "rocket", "astronaut")}


def test_tokens_and_cost_add_up_in_metadata_and_dam_cost(
    server, settings: Settings, instance, dam
) -> None:
    settings = paid(settings, server)
    write_library(settings.layout.library, PHOTOS)
    captions = ingest(settings, instance)["pets"]["captions"]
    assert captions["requests"] == len(server.requests) == 4
    assert captions["input_tokens"] == 4 * PROMPT_TOKENS
    assert captions["output_tokens"] == 4 * COMPLETION_TOKENS
    assert captions["cost_usd"] == pytest.approx(4 * EACH, abs=1e-9)

    again = ingest(settings, instance)["pets"]["captions"]
    assert again["requests"] == 0 and len(server.requests) == 4  # the cache answers
    assert again["cost_avoided_usd"] == pytest.approx(4 * EACH, abs=1e-9)

    report = json.loads(dam(settings, "cost", "--json").out)
    assert report["requests"] == 4 and report["input_tokens"] == 4 * PROMPT_TOKENS
    assert report["cost_usd"] == pytest.approx(4 * EACH, abs=1e-6)
    assert report["by_model"]["openai/llava"]["output_tokens"] == 4 * COMPLETION_TOKENS
    assert report["by_partition"]["pets"]["cost_usd"] == pytest.approx(4 * EACH, abs=1e-6)

    write_library(settings.layout.library, {"pets/more.jpg": "motorcycle_left"})
    as_configured = {
        "DAM_CAPTIONER": "openai",
        "DAM_CAPTIONER_MODEL": "llava",
        "DAM_CAPTIONER_BASE_URL": settings.captioner_base_url,
        "DAM_PRICES": settings.prices,
    }
    estimate = json.loads(dam(settings, "cost", "--estimate", "--json", **as_configured).out)
    assert estimate["objects"] == 1 and estimate["cost_usd"] == pytest.approx(EACH, abs=1e-6)
    assert "mean of 4 images" in estimate["basis"]


def test_a_budget_defers_what_it_does_not_cover_and_the_next_run_finishes(
    server, settings: Settings, instance
) -> None:
    write_library(settings.layout.library, PHOTOS)
    half = paid(settings, server, budget_usd_per_run=2 * EACH + 1e-6)
    # the first estimate is the model's price for FIRST_ESTIMATE's tokens: price tokens at 0
    # so that it is one image's per-image price, and the budget covers exactly two
    flat = {"openai/llava": {"per_image": EACH}}
    first = ingest(half.replace(prices=json.dumps(flat)), instance)["pets"]
    assert first["captions"]["computed"] == 2 and first["captions"]["deferred"] == 2
    assert first["captions"]["cost_usd"] == pytest.approx(2 * EACH, abs=1e-9)
    assert "DAM_BUDGET_USD_PER_RUN" in first["captions"]["quarantine"]
    assert first["vector_index"]["indexed"] == 2 and first["vector_index"]["deferred"] == 2
    assert len(server.requests) == 2

    rest = ingest(paid(settings, server, budget_usd_per_run=1.0), instance)["pets"]
    assert rest["captions"]["computed"] == 2 and rest["captions"]["deferred"] == 0
    assert rest["vector_index"]["indexed"] == 4
    images = [r["body"]["messages"][0]["content"][1]["image_url"]["url"] for r in server.requests]
    assert len(server.requests) == 4 and len(set(images)) == 4  # none captioned twice


def test_an_answer_says_what_it_cost_and_the_ledger_keeps_it(server, settings: Settings) -> None:
    from dam_pipeline.library import Library
    from dam_pipeline_tests.test_reasoners import SOURCES

    settings = paid(settings, server)
    reasoner = OpenAICompatibleReasoner(model="reasoner", base_url=f"{server.url}/v1")
    answer = reasoner.answer("Is there a cat?", SOURCES)
    assert answer.usage == {
        "openai/reasoner": {
            "requests": 1,
            "input_tokens": PROMPT_TOKENS,
            "output_tokens": COMPLETION_TOKENS,
            "images": 0,
            "unknown_cost": 0,
        }
    }
    priced = Library(settings)._priced(answer, "question")
    assert priced.cost_usd == pytest.approx(PROMPT_TOKENS * 3e-6 + COMPLETION_TOKENS * 5e-6)
    assert Library(settings).spend()["by_stage"]["ask"]["requests"] == 1


def test_prices_parse_strictly_and_the_budget_counts_in_images() -> None:
    table = PriceTable.from_json(json.dumps({"x/y": {"per_request": 0.5}}))
    assert table.cost("x/y", Usage(requests=3)) == 1.5
    assert table.price("groq/llama-3.3-70b-versatile") == Price(0.59, 0.79)
    for bad in ("[1]", '{"x/y": {"per_token": 1}}', '{"x/y": {"per_image": "a lot"}}', "{"):
        with pytest.raises(PriceError):
            PriceTable.from_json(bad)
    with pytest.raises(ValueError, match="DAM_PRICES"):
        Settings(prices='{"x": 1}')
    budget = RunBudget(1.0, PriceTable.from_json(json.dumps({"m/x": {"per_image": 0.3}})))
    assert budget.affordable("m/x", 10) == 3
    budget.spend(0.8, 2)  # 0.4 each as measured: 0.2 left covers none
    assert budget.affordable("m/x", 10) == 0


def test_timed_out_calls_reach_dam_cost_as_unknown_cost_and_an_old_ledger_upgrades(
    settings: Settings, dam
) -> None:
    import sqlite3

    from dam_pipeline.costs import SqliteSpendLedger, spend_rows

    path = settings.layout.spend
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as old:  # the ledger as written before unknown_cost existed
        old.execute(
            "CREATE TABLE spend (recorded_at REAL NOT NULL, run_id TEXT NOT NULL, "
            "partition TEXT NOT NULL, stage TEXT NOT NULL, model_id TEXT NOT NULL, "
            "requests INTEGER NOT NULL, input_tokens INTEGER NOT NULL, "
            "output_tokens INTEGER NOT NULL, images INTEGER NOT NULL, cost_usd REAL NOT NULL)"
        )
        old.execute("INSERT INTO spend VALUES (1.0, 'r0', 'pets', 'captions', 'openai/llava', "
                    "1, 1200, 150, 1, 0.0025)")  # fmt: skip
    ledger = SqliteSpendLedger(path)
    usage = {"openai/llava": Usage(requests=3, images=3, unknown_cost=2)}
    ledger.record(spend_rows(usage, PriceTable.from_json(json.dumps(PRICES)), "r1", "pets", "c"))
    assert [row.usage.unknown_cost for row in ledger.rows()] == [0, 2]
    report = json.loads(dam(settings, "cost", "--json").out)
    assert (report["requests"], report["unknown_cost"]) == (4, 2)
    assert "2 requests of unknown cost" in dam(settings, "cost").out
