"""Turning raw metric values into the Stats API's JSON values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from analytics.fields import METRICS, metric_names

INTEGER_METRICS = metric_names(integer=True)
FLOAT_METRICS = metric_names(integer=False) - metric_names(format="revenue")
REVENUE_METRICS = tuple(m.name for m in METRICS if m.format == "revenue")
NULLABLE_METRICS = metric_names(nullable=True)

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CHF": "CHF ", "CAD": "CA$", "AUD": "A$", "INR": "₹"}


def revenue(value: Any, currencies: list[str] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    real = sorted({c for c in (currencies or []) if c})
    if len(real) > 1:
        return None
    currency = real[0] if real else ""
    amount = float(Decimal(value))
    symbol = _SYMBOLS.get(currency, f"{currency} " if currency else "")
    long = f"{symbol}{amount:,.2f}"
    short = long
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(amount) >= threshold:
            short = f"{symbol}{amount / threshold:.1f}{suffix}"
            break
    return {"value": round(amount, 2), "currency": currency, "short": short, "long": long}


def metric_value(metric: str, value: Any, currencies: list[str] | None = None) -> Any:
    if metric in REVENUE_METRICS:
        return revenue(value, currencies)
    if value is None:
        return None if metric in NULLABLE_METRICS else 0
    if metric in INTEGER_METRICS:
        return int(value)
    if metric in FLOAT_METRICS:
        return float(value)
    return value
