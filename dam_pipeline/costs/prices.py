"""Prices in US dollars per provider/model, and what a usage costs.

The defaults are the providers' list prices for the models the README names (checked when
this table was written; providers change them): set ``DAM_PRICES`` to a JSON object
``{"provider/model": {"input_per_mtok": USD, "output_per_mtok": USD, "per_request": USD,
"per_image": USD}}`` (missing keys are 0) to override or add models. A model with no price
costs 0 and is named in the report, so an unpriced provider is visible, not silent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from dam_pipeline.costs.usage import Usage, Usages, usages_to_json


@dataclass(frozen=True)
class Price:
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    per_request: float = 0.0
    per_image: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input_per_mtok / 1e6
            + usage.output_tokens * self.output_per_mtok / 1e6
            + usage.requests * self.per_request
            + usage.images * self.per_image
        )


DEFAULT_PRICES: dict[str, Price] = {
    # Groq (console.groq.com/pricing)
    "groq/meta-llama/llama-4-scout-17b-16e-instruct": Price(0.11, 0.34),
    "groq/meta-llama/llama-4-maverick-17b-128e-instruct": Price(0.20, 0.60),
    "groq/llama-3.3-70b-versatile": Price(0.59, 0.79),
    # OpenAI (openai.com/api/pricing)
    "openai/gpt-4o-mini": Price(0.15, 0.60),
    "openai/gpt-4o": Price(2.50, 10.00),
    "openai/gpt-4.1-mini": Price(0.40, 1.60),
    # Amazon Bedrock (aws.amazon.com/bedrock/pricing): Titan Multimodal Embeddings G1
    "bedrock/amazon.titan-embed-image-v1": Price(input_per_mtok=0.80, per_image=0.00006),
}


FIRST_ESTIMATE = Usage(requests=1, input_tokens=1800, output_tokens=200, images=1)
"""One image's caption before any was measured: an image is about 1,500 input tokens at
Llama-4-Scout's tiling, plus the prompt; a paragraph and tags come out."""


class PriceError(ValueError):
    """``DAM_PRICES`` is not the JSON the README describes; the message says what is wrong."""


@dataclass(frozen=True)
class PriceTable:
    prices: dict[str, Price]

    @classmethod
    def from_json(cls, text: str = "") -> PriceTable:
        """The defaults, overridden by ``DAM_PRICES`` (a JSON object, or "")."""
        prices = dict(DEFAULT_PRICES)
        if not text.strip():
            return cls(prices)
        try:
            given = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PriceError(f"DAM_PRICES is not JSON ({exc})") from None
        if not isinstance(given, dict):
            raise PriceError('DAM_PRICES must be a JSON object {"provider/model": {...}}')
        known = {f.name for f in fields(Price)}
        for model_id, entry in given.items():
            if not isinstance(entry, dict) or set(entry) - known:
                raise PriceError(
                    f"DAM_PRICES[{model_id!r}] must be an object with only "
                    f"{', '.join(sorted(known))}"
                )
            try:
                prices[model_id] = Price(**{k: float(v) for k, v in entry.items()})
            except (TypeError, ValueError):
                raise PriceError(
                    f"DAM_PRICES[{model_id!r}] holds a value that is not a number"
                ) from None
        return cls(prices)

    def price(self, model_id: str) -> Price | None:
        return self.prices.get(model_id)

    def cost(self, model_id: str, usage: Usage) -> float:
        price = self.prices.get(model_id)
        return price.cost(usage) if price else 0.0

    def total(self, usages: Usages) -> float:
        return sum(self.cost(model_id, usage) for model_id, usage in usages.items())

    def unpriced(self, usages: Usages) -> list[str]:
        return sorted(model_id for model_id in usages if model_id not in self.prices)


def spend_summary(
    usage: Usages,
    prices: PriceTable,
    computed: int,
    reused: int,
    model_id: str,
    known_each: float | None = None,
) -> dict:
    """Requests, tokens and cost of a stage's paid calls, and what the cache saved: the
    reused results at the mean cost of one as recorded before (``known_each``, from the
    spend ledger), else this run's mean, else ``FIRST_ESTIMATE`` at the model's price."""
    totals = sum(usage.values(), Usage())
    cost = prices.total(usage)
    each = known_each
    if each is None:
        each = cost / computed if computed else prices.cost(model_id, FIRST_ESTIMATE)
    return {
        "requests": totals.requests,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "cost_usd": round(cost, 6),
        "cost_avoided_usd": round(each * reused, 6),
        "usage": usages_to_json(usage),
        "unpriced_models": ", ".join(prices.unpriced(usage)),
    }
