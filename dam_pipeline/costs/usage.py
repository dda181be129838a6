"""What remote providers report for each call, tallied per provider/model.

Every remote component (vision captioner, reasoner, re-ranker, Bedrock embedder) owns a
``UsageMeter`` and records each call's reported ``usage`` into it. A stage or a query reads
the meter before and after its work: the difference is what that work used, whatever else
the same component did meanwhile in other threads.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    """One provider/model's calls: requests, tokens as the provider counted them, images,
    and ``unknown_cost``: the requests that may have been billed but reported nothing (timed
    out, or answered with a body that could not be read), so their cost is not known."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    unknown_cost: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.images + other.images,
            self.unknown_cost + other.unknown_cost,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.requests - other.requests,
            self.input_tokens - other.input_tokens,
            self.output_tokens - other.output_tokens,
            self.images - other.images,
            self.unknown_cost - other.unknown_cost,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def empty(self) -> bool:
        return not any(asdict(self).values())


Usages = dict[str, Usage]
"""provider/model -> usage."""


def chat_usage(response: Any, images: int = 0) -> Usage:
    """A chat-completions response's reported usage (one request; no usage reported: 0
    tokens, so the request is still counted and priced per request)."""
    usage = getattr(response, "usage", None)
    return Usage(
        requests=1,
        input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        images=images,
    )


class UsageMeter:
    """A thread-safe running total per provider/model."""

    def __init__(self) -> None:
        self._totals: Usages = {}
        self._lock = threading.Lock()

    def record(self, model_id: str, usage: Usage) -> None:
        with self._lock:
            self._totals[model_id] = self._totals.get(model_id, Usage()) + usage

    def snapshot(self) -> Usages:
        with self._lock:
            return dict(self._totals)

    def since(self, before: Usages) -> Usages:
        """What was recorded after ``before`` (a snapshot), without empty entries."""
        now = self.snapshot()
        delta = {key: usage - before.get(key, Usage()) for key, usage in now.items()}
        return {key: usage for key, usage in delta.items() if not usage.empty}


def meter_of(component: Any) -> UsageMeter | None:
    """The component's meter, if it calls a paid provider (local models have none)."""
    return getattr(component, "meter", None)


def combined(*usages: Usages) -> Usages:
    total: Usages = {}
    for part in usages:
        for key, usage in part.items():
            total[key] = total.get(key, Usage()) + usage
    return total


def usages_to_json(usages: Usages) -> dict[str, dict[str, int]]:
    """provider/model -> counts, as manifests, answers and metadata carry them."""
    return {model: usage.to_dict() for model, usage in usages.items()}


def usages_from_json(data: dict[str, dict[str, int]] | None) -> Usages:
    return {model: Usage(**counts) for model, counts in (data or {}).items()}


UNREPORTED = Usage(requests=1, unknown_cost=1)
"""A request that may have been billed and reported no usage (timed out, unreadable)."""
