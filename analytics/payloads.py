"""The enriched event: what the collector publishes and the worker consumes.

The first contract of docs/interfaces.md. The collector
publishes the Celery task ``analytics.ingest_batch`` on
``settings.EVENTS_QUEUE`` with kwargs ``{"batch_id": "<uuid4 hex>",
"events": [EnrichedEvent, ...]}``. Every value is JSON-serialisable; the
worker computes ``visit_id`` itself.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import math
import re
import socket
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypedDict

from spinnakr.text import UNSTORABLE_CHARACTERS

INGEST_TASK = "analytics.ingest_batch"
# The task's messages: JSON written and read by orjson (registered in spinnakr.celery).
EVENTS_SERIALIZER = "orjson"
EVENTS_CONTENT_TYPE = "application/x-orjson"
# The task's time limits, which its messages carry in their headers (spinnakr.queue.wire).
INGEST_SOFT_TIME_LIMIT = 240
INGEST_TIME_LIMIT = 300


class EnrichedEvent(TypedDict):
    """The fields of ``analytics.fields.EVENT_FIELDS``, in order (analytics/tests/test_fields.py)."""

    site_id: int
    ts: int  # epoch microseconds, UTC
    event_id: str  # uuid, canonical text form
    name: str  # 'pageview', 'engagement' or a custom name
    visitor_id: int  # signed 64-bit
    hostname: str
    pathname: str
    referrer_source: str
    channel: str
    referrer: str
    utm_source: str
    utm_medium: str
    utm_campaign: str
    utm_content: str
    utm_term: str
    country: str  # ISO 3166-1 alpha-2, '' when unknown
    browser: str
    browser_version: str
    os: str
    os_version: str
    device: str  # 'Desktop', 'Mobile', 'Tablet' or ''
    screen: str  # 'mobile', 'tablet', 'laptop', 'desktop' or ''
    props: dict[str, str]
    revenue_amount: str | None  # decimal as text
    revenue_currency: str
    interactive: bool
    scroll_depth: int | None  # 0-100, engagement events only
    engagement_ms: int | None  # engagement events only


# Incoming events (Plausible's Events API, long or short field names) ----------

MAX_NAME_LENGTH = 120
MAX_URL_LENGTH = 2000
MAX_DOMAINS = 10
MAX_PROPS = 30
MAX_PROP_KEY_BYTES = 300
MAX_PROP_VALUE_BYTES = 2000
MAX_CLIENT_ID_LENGTH = 200
ENGAGEMENT = "engagement"
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_MAX_REVENUE = Decimal("1e14")


class InvalidEvent(ValueError):
    """A field is missing or invalid; ``str()`` names the field."""


def unstorable(text: str) -> bool:
    """True when PostgreSQL cannot store ``text`` (a NUL or a surrogate in it)."""
    # isascii() is O(1) on CPython: most texts cost one memchr for the NUL.
    return "\x00" in text if text.isascii() else UNSTORABLE_CHARACTERS.search(text) is not None


UNSTORABLE = "contains a NUL or an unpaired surrogate, which cannot be stored"


def check_storable(text: str, field: str) -> str:
    """``text``, or InvalidEvent naming ``field`` when PostgreSQL could not store it."""
    if unstorable(text):
        raise InvalidEvent(f"{field}: {UNSTORABLE}")
    return text


@dataclass(slots=True)
class IncomingEvent:
    name: str
    url: str
    domains: list[str]
    key: str
    referrer: str
    props: dict[str, str]
    revenue_amount: str | None
    revenue_currency: str
    interactive: bool
    hash_mode: bool
    width: float | None
    scroll_depth: int | None
    engagement_ms: int | None
    # Batch endpoint only.
    timestamp_us: int | None = None
    ip: str = ""
    user_agent: str = ""
    visitor_id: str = ""
    client_id: str = ""


def _first(body: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = body.get(name)
        if value is not None:
            return value
    return None


def _text(value: Any, field: str, limit: int, required: bool = False) -> str:
    """``value`` (the field's, None when absent) as stripped text within ``limit`` characters."""
    if value is None:
        if required:
            raise InvalidEvent(f"{field}: required")
        return ""
    if not isinstance(value, str):
        raise InvalidEvent(f"{field}: must be a string")
    value = value.strip()
    if required and not value:
        raise InvalidEvent(f"{field}: must not be empty")
    if len(value) > limit:
        raise InvalidEvent(f"{field}: longer than {limit} characters")
    # unstorable(), inline: every text of every request passes here.
    if "\x00" in value if value.isascii() else UNSTORABLE_CHARACTERS.search(value) is not None:
        raise InvalidEvent(f"{field}: {UNSTORABLE}")
    return value


def _props(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        # Plausible's older tracker sends props as a JSON-encoded string.
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise InvalidEvent("props: must be an object of scalar values") from None
        if value is None:
            return {}
    if not isinstance(value, dict):
        raise InvalidEvent("props: must be an object of scalar values")
    props: dict[str, str] = {}
    for key, raw in value.items():
        if raw is None:
            continue
        if isinstance(raw, bool):
            text = "true" if raw else "false"
        elif isinstance(raw, int | float) and math.isfinite(raw):
            text = str(raw)
        elif isinstance(raw, str):
            text = raw
        else:
            raise InvalidEvent(f"props.{key[:50]}: must be a string, number or boolean")
        if unstorable(key) or unstorable(text):
            raise InvalidEvent(f"props.{key[:50]}: {UNSTORABLE}")
        if not key or len(key.encode()) > MAX_PROP_KEY_BYTES:
            raise InvalidEvent(f"props: a key is empty or longer than {MAX_PROP_KEY_BYTES} bytes")
        if len(text.encode()) > MAX_PROP_VALUE_BYTES:
            raise InvalidEvent(f"props.{key[:50]}: longer than {MAX_PROP_VALUE_BYTES} bytes")
        props[key] = text
    if len(props) > MAX_PROPS:
        raise InvalidEvent(f"props: more than {MAX_PROPS} properties")
    return props


def _revenue(value: Any) -> tuple[str | None, str]:
    if value is None:
        return None, ""
    if not isinstance(value, dict):
        raise InvalidEvent("revenue: must be an object with amount and currency")
    amount = value.get("amount")
    currency = value.get("currency")
    if isinstance(amount, bool) or not isinstance(amount, int | float | str):
        raise InvalidEvent("revenue.amount: must be a number")
    try:
        decimal = Decimal(str(amount).strip())
    except InvalidOperation:
        raise InvalidEvent("revenue.amount: must be a number") from None
    if not decimal.is_finite() or abs(decimal) >= _MAX_REVENUE:
        raise InvalidEvent("revenue.amount: must be a finite number below 10^14")
    if not isinstance(currency, str) or not _CURRENCY.match(currency.strip().upper()):
        raise InvalidEvent("revenue.currency: must be an ISO 4217 code such as EUR")
    return str(decimal.quantize(Decimal("0.0001"))), currency.strip().upper()


def _flag(value: Any, field: str, *, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidEvent(f"{field}: must be true or false")


def _number(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidEvent(f"{field}: must be a number")
    return float(value)


def _bounded_int(value: Any, field: str, *, low: int, high: int) -> int | None:
    number = _number(value, field)
    if number is None:
        return None
    if number < low:
        raise InvalidEvent(f"{field}: must be at least {low}")
    return int(min(number, high))


def _ip(value: str) -> str:
    """The canonical text of an IP address (as ``str(ipaddress.ip_address(value))``)."""
    if ":" not in value:
        # IPv4: inet_pton is C and as strict as ipaddress (four decimal octets, no
        # leading zeros), and its dotted quad is the canonical text; 10x cheaper.
        try:
            return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, value))
        except (OSError, ValueError):
            raise InvalidEvent("ip: not an IP address") from None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidEvent("ip: not an IP address") from None


def parse_timestamp(value: Any, now: float) -> int:
    """ISO 8601 or Unix seconds within the last 24 hours (5 minutes of clock skew allowed) → epoch µs."""
    if isinstance(value, bool):
        raise InvalidEvent("timestamp: must be ISO 8601 or Unix seconds")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidEvent("timestamp: must be ISO 8601 or Unix seconds")
        seconds = float(value)
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidEvent("timestamp: must be ISO 8601 or Unix seconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        seconds = parsed.timestamp()
    else:
        raise InvalidEvent("timestamp: must be ISO 8601 or Unix seconds")
    if seconds < now - 86_400:
        raise InvalidEvent("timestamp: older than 24 hours")
    if seconds > now + 300:
        raise InvalidEvent("timestamp: in the future")
    return int(seconds * 1_000_000)


def parse_event(body: Any, *, batch: bool = False, now: float | None = None) -> IncomingEvent:
    """Validate one event body; raises InvalidEvent naming the first bad field.

    Each field may come under its long or its short name (the long one wins);
    null counts as absent. Fields are checked in a fixed order, so the error
    names the first bad one of: name, url, key, domain, revenue, referrer,
    props, interactive, h, screen_width, sd, e, then the batch fields.
    """
    if not isinstance(body, dict):
        raise InvalidEvent("body: must be a JSON object")
    get = body.get
    # Long name, else short name: written out, this is the hot path of every request.
    value = get("name")
    name = _text(get("n") if value is None else value, "name", MAX_NAME_LENGTH, True)
    value = get("url")
    url = _text(get("u") if value is None else value, "url", MAX_URL_LENGTH, True)
    scheme, _, rest = url.partition(":")
    if not rest or not scheme.isascii() or not scheme.isalpha():
        raise InvalidEvent("url: must be an absolute URL")
    value = get("key")
    key = _text(get("k") if value is None else value, "key", 100)
    value = get("domain")
    domain_text = _text(get("d") if value is None else value, "domain", MAX_DOMAINS * 256)
    if "," in domain_text:
        domains = [part.strip().lower() for part in domain_text.split(",") if part.strip()]
    else:
        domains = [domain_text.lower()] if domain_text else []
    if not key and not domains:
        raise InvalidEvent("domain: required (or key)")
    if len(domains) > MAX_DOMAINS:
        raise InvalidEvent(f"domain: more than {MAX_DOMAINS} domains")
    if any(len(domain) > 255 for domain in domains):
        raise InvalidEvent("domain: a domain is longer than 255 characters")
    value = get("revenue")
    revenue = get("$") if value is None else value
    revenue_amount, revenue_currency = (None, "") if revenue is None else _revenue(revenue)
    value = get("referrer")
    referrer = _text(get("r") if value is None else value, "referrer", MAX_URL_LENGTH)
    props = _first(body, "props", "p", "m", "meta")
    value = get("interactive")
    interactive = get("i") if value is None else value
    value = get("h")
    hash_mode = get("hash") if value is None else value
    value = get("screen_width")
    width = get("w") if value is None else value
    engagement = name == ENGAGEMENT
    event = IncomingEvent(
        name=name,
        url=url,
        domains=domains,
        key=key,
        referrer=referrer,
        props={} if props is None else _props(props),
        revenue_amount=revenue_amount,
        revenue_currency=revenue_currency,
        interactive=True if interactive is None else _flag(interactive, "interactive", default=True),
        hash_mode=False if hash_mode is None else _flag(hash_mode, "h", default=False),
        width=None if width is None else _number(width, "screen_width"),
        scroll_depth=_bounded_int(_first(body, "sd", "scroll_depth"), "sd", low=0, high=100) if engagement else None,
        engagement_ms=_bounded_int(_first(body, "e", "engagement_time"), "e", low=0, high=2**31 - 1)
        if engagement
        else None,
    )
    if batch:
        now = time.time() if now is None else now
        timestamp = get("timestamp")
        event.timestamp_us = None if timestamp is None else parse_timestamp(timestamp, now)
        ip = _text(get("ip"), "ip", 64)
        event.ip = _ip(ip) if ip else ""
        event.user_agent = _text(get("user_agent"), "user_agent", 2000)
        visitor = get("visitor_id")
        if visitor is not None and (isinstance(visitor, bool) or not isinstance(visitor, str | int)):
            raise InvalidEvent("visitor_id: must be a string or an integer")
        event.visitor_id = (
            "" if visitor is None else check_storable(str(visitor).strip()[:MAX_CLIENT_ID_LENGTH], "visitor_id")
        )
        if not event.visitor_id and not (event.ip and event.user_agent):
            raise InvalidEvent("ip: ip and user_agent, or visitor_id, are required")
        client_id = get("id")
        if client_id is not None and (isinstance(client_id, bool) or not isinstance(client_id, str | int)):
            raise InvalidEvent("id: must be a string or an integer")
        event.client_id = "" if client_id is None else check_storable(str(client_id).strip(), "id")
        if len(event.client_id) > MAX_CLIENT_ID_LENGTH:
            raise InvalidEvent(f"id: longer than {MAX_CLIENT_ID_LENGTH} characters")
    return event
