"""What paid providers are asked and what it costs: usage as the providers report it, a
price table, the spend ledger behind `dam cost`, and the per-run budget."""

from dam_pipeline.costs.budget import RunBudget
from dam_pipeline.costs.ledger import (
    PostgresSpendLedger,
    SpendLedger,
    SpendRow,
    SqliteSpendLedger,
    report,
    spend_rows,
)
from dam_pipeline.costs.prices import DEFAULT_PRICES, Price, PriceError, PriceTable, spend_summary
from dam_pipeline.costs.usage import (
    UNREPORTED,
    Usage,
    UsageMeter,
    Usages,
    chat_usage,
    combined,
    meter_of,
    usages_from_json,
    usages_to_json,
)

__all__ = [
    "DEFAULT_PRICES",
    "UNREPORTED",
    "PostgresSpendLedger",
    "Price",
    "PriceError",
    "PriceTable",
    "RunBudget",
    "SpendLedger",
    "SpendRow",
    "SqliteSpendLedger",
    "Usage",
    "UsageMeter",
    "Usages",
    "chat_usage",
    "combined",
    "meter_of",
    "report",
    "spend_rows",
    "spend_summary",
    "usages_from_json",
    "usages_to_json",
]
