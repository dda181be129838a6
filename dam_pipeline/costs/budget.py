"""A run's budget for paid requests (``DAM_BUDGET_USD_PER_RUN``).

Before each batch the captions stage asks how many images it may send: as many as the
budget left covers at the estimated cost of one (the mean of what this run's images cost so
far, retries included, or, before the first, ``FIRST_ESTIMATE`` at the model's price).
What is not sent is *deferred*: recorded with the reason, not cached, and picked up by the
next run.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

from dam_pipeline.costs.prices import FIRST_ESTIMATE, PriceTable


@dataclass
class RunBudget:
    limit_usd: float
    """0: no limit."""
    prices: PriceTable
    spent_usd: float = 0.0
    images: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def limited(self) -> bool:
        return self.limit_usd > 0

    def per_image(self, model_id: str) -> float:
        """What the next image is expected to cost."""
        with self._lock:
            if self.images:
                return self.spent_usd / self.images
        return self.prices.cost(model_id, FIRST_ESTIMATE)

    def affordable(self, model_id: str, wanted: int) -> int:
        """How many of ``wanted`` images may be sent without going over the budget."""
        if not self.limited:
            return wanted
        each = self.per_image(model_id)
        with self._lock:
            left = self.limit_usd - self.spent_usd
        if each <= 0:
            return wanted if left > 0 else 0
        return max(0, min(wanted, math.floor(left / each + 1e-9)))

    def spend(self, cost_usd: float, images: int) -> None:
        with self._lock:
            self.spent_usd += cost_usd
            self.images += images

    def reason(self) -> str:
        return (
            f"deferred: the run's budget (DAM_BUDGET_USD_PER_RUN={self.limit_usd:g}) is spent "
            f"(${self.spent_usd:.4f}); the next run captions it"
        )
