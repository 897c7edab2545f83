"""The collector: lean ASGI handlers for the hot path, in front of Django.

- ``POST /api/event``: one event, wire-compatible with Plausible's Events API.
- ``POST /api/events``: a batch from a server, authenticated by an API key with ``events:write``.
- ``GET /api/pixel/<site key>.gif``: the no-JavaScript fallback, records a pageview.
- ``GET /js/script.js``: the tracking snippet (``?v=<version>`` makes it immutable for a year).

No ORM query and no Redis round trip per request: sites come from
``analytics.collector.sitecache``, rate limits from in-process token buckets, salts
from memory; the only I/O is the group-committed publish (``analytics.collector.publish``).
Every response, errors included, carries CORS headers. Errors are JSON
``{"error": "…"}`` naming the problem:

- 400 malformed body or an invalid field (named), including text PostgreSQL cannot store (a
  NUL or a lone surrogate, in any field, header or decoded query value the event keeps),
  404 unknown domain or key,
  403 origin outside the site's allowed origins, 403 ``account suspended``,
  403 ``monthly event quota exceeded`` (``analytics.ingest.quota``: past 110% of the
  quota), 413 body too large, 429 rate limited (Retry-After), 503 broker or
  Redis unreachable (Retry-After). Bots get 202 and are dropped, counted per
  site in Redis ``{s:<id>}:dropped:bots``.

Every answer is counted by endpoint, status and reason in ``spinnakr_collector_events_total``
(``spinnakr.metrics``): an increment in this process's memory-mapped file, no I/O.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qsl

import uuid_utils

from analytics.collector import agents, enrich, visitors
from analytics.collector.address import client_address
from analytics.collector.admission import (
    BOT_DROPS,
    IP_BUCKETS,
    admit,
    cached_sites,
    ensure_salts,
    find_sites,
    lookup_site,
)
from analytics.collector.http import (
    Receive,
    Reject,
    Scope,
    Send,
    parse_json,
    rate_limited,
    read_body,
    request_headers,
    respond,
    respond_accepted,
    respond_error,
    unavailable,
)
from analytics.collector.ids import claim_client_ids, release_client_ids
from analytics.collector.keys import KeyGrant, authorize
from analytics.collector.publish import PUBLISHER, PublishError, UnpublishableEvents
from analytics.collector.ratelimit import retry_after
from analytics.collector.sitecache import SiteInfo
from analytics.payloads import (
    UNSTORABLE,
    EnrichedEvent,
    IncomingEvent,
    InvalidEvent,
    check_storable,
    parse_event,
)
from spinnakr.metrics import collector_answer

logger = logging.getLogger(__name__)

MAX_EVENT_BODY = 16 * 1024
MAX_BATCH_BODY = 1024 * 1024
MAX_BATCH_EVENTS = 1000


# Event ids of client-supplied ids: uuid5 of (site, id) in this namespace.
CLIENT_ID_NAMESPACE = uuid.UUID("6b2f0c5e-8d1a-4a8e-9d0b-5f3c2a1e7b44")
# The hot path's usual answers, counted without a lookup (spinnakr.metrics).
EVENT_ACCEPTED = collector_answer("event", 202, "accepted")
EVENT_BOT = collector_answer("event", 202, "bot")
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


# Enrichment -------------------------------------------------------------------


def parse(body: Any, *, batch: bool = False, now: float | None = None) -> tuple[IncomingEvent, enrich.Page]:
    """``parse_event`` and the page of its URL, whose query values, once decoded, must be storable too."""
    event = parse_event(body, batch=batch, now=now)
    page = enrich.parse_page(event.url, hash_mode=event.hash_mode)
    if page.unstorable:
        raise InvalidEvent(f"url.{page.unstorable}: {UNSTORABLE}")
    return event, page


def build_event(
    site: SiteInfo,
    event: IncomingEvent,
    page: enrich.Page,
    *,
    ts_us: int,
    event_id: str,
    address: str,
    user_agent: str,
    agent: agents.Agent,
    visitor: int,
) -> EnrichedEvent:
    acquisition = enrich.acquisition(event.referrer, page)
    return {
        "site_id": site.site_id,
        "ts": ts_us,
        "event_id": event_id,
        "name": event.name,
        "visitor_id": visitor,
        "hostname": page.hostname,
        "pathname": page.pathname,
        "referrer_source": acquisition.source,
        "channel": acquisition.channel,
        "referrer": acquisition.referrer,
        "utm_source": page.utm_source,
        "utm_medium": page.utm_medium,
        "utm_campaign": page.utm_campaign,
        "utm_content": page.utm_content,
        "utm_term": page.utm_term,
        "country": enrich.country(address),
        "browser": agent.browser,
        "browser_version": agent.browser_version,
        "os": agent.os,
        "os_version": agent.os_version,
        "device": agent.device,
        "screen": agents.screen_class(event.width),
        "props": event.props,
        "revenue_amount": event.revenue_amount,
        "revenue_currency": event.revenue_currency,
        "interactive": event.interactive,
        "scroll_depth": event.scroll_depth,
        "engagement_ms": event.engagement_ms,
    }


async def publish(events: list[EnrichedEvent]) -> None:
    try:
        await PUBLISHER.submit(events)
    except UnpublishableEvents:
        # Validation refuses such text first; this keeps it the sender's error if one slips past.
        raise Reject(400, "body: holds text that cannot be encoded (an unpaired surrogate)") from None
    except PublishError:
        raise unavailable("queue unavailable, retry later") from None


# POST /api/event ----------------------------------------------------------------


def admitted_address(scope: Scope) -> str:
    """The client's address, once its per-address rate limit lets it in (raises Reject)."""
    address = client_address(scope)
    wait = IP_BUCKETS.take(address)
    if wait:
        raise rate_limited("rate limit exceeded for this address", wait)
    return address


async def record(
    scope: Scope,
    headers: dict[bytes, bytes],
    event: IncomingEvent,
    page: enrich.Page,
    address: str,
) -> bool:
    """Admit, enrich and publish one browser event for each of its sites (raises Reject); False
    for a bot's event, answered as accepted and dropped."""
    user_agent = check_storable(headers.get(b"user-agent", b"").decode("latin-1"), "user-agent")
    sites = cached_sites(event) or await find_sites(event)
    origin_header = headers.get(b"origin")
    origin = origin_header.decode("latin-1") if origin_header else None
    now = time.time()
    monotonic = time.monotonic()
    for site in sites:
        admit(site, origin, 1, monotonic)
    agent = agents.parse_user_agent(user_agent)
    if agent.bot:
        for site in sites:
            BOT_DROPS[site.site_id] += 1
        return False
    today = visitors.utc_day(now)
    if not visitors.SALTS.fresh(today):
        await ensure_salts(now)
    salt = visitors.SALTS.for_day(today)
    if salt is None:  # the day turned between the two calls: next request reloads
        raise unavailable()
    ts_us = int(now * 1_000_000)
    events = [
        build_event(
            site,
            event,
            page,
            ts_us=ts_us,
            event_id=str(uuid_utils.uuid7()),
            address=address,
            user_agent=user_agent,
            agent=agent,
            visitor=visitors.visitor_id(salt, site.site_id, address, user_agent),
        )
        for site in sites
    ]
    await publish(events)
    return True


async def event_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    headers = request_headers(scope)
    method = scope["method"]
    if method == "OPTIONS":
        await respond(send, 204, b"", headers, preflight=True)
        return
    try:
        if method != "POST":
            raise Reject(405, "method not allowed: use POST", [(b"allow", b"POST, OPTIONS")])
        address = admitted_address(scope)
        raw = await read_body(scope, receive, headers, MAX_EVENT_BODY)
        event, page = parse(parse_json(raw))
        kept = await record(scope, headers, event, page, address)
    except InvalidEvent as exc:
        await refuse(send, headers, "event", Reject(400, str(exc)))
        return
    except Reject as reject:
        await refuse(send, headers, "event", reject)
        return
    (EVENT_ACCEPTED if kept else EVENT_BOT).inc()
    await respond_accepted(send, headers)


async def refuse(send: Send, headers: dict[bytes, bytes], endpoint: str, reject: Reject) -> None:
    collector_answer(endpoint, reject.status, reject.reason).inc()
    await respond_error(send, headers, reject)


# GET /api/pixel/<site key>.gif --------------------------------------------------


async def pixel_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    headers = request_headers(scope)
    try:
        if scope["method"] not in {"GET", "HEAD"}:
            raise Reject(405, "method not allowed: use GET", [(b"allow", b"GET, HEAD")])
        name = scope["path"][len("/api/pixel/") :]
        if not name.endswith(".gif") or "/" in name or len(name) > 104:
            raise Reject(404, "unknown site key")
        key = check_storable(name[: -len(".gif")], "key")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        address = admitted_address(scope)
        site = await lookup_site("site_key", key)
        if site is None:
            raise Reject(404, "unknown site key")
        page_url = query.get("u") or headers.get(b"referer", b"").decode("latin-1") or f"https://{site.domain}/"
        body: dict[str, Any] = {"name": "pageview", "url": page_url[:2000], "key": key, "referrer": query.get("r")}
        if query.get("w", "").isdigit():
            body["w"] = int(query["w"])
        event, page = parse(body)
        kept = await record(scope, headers, event, page, address)
    except InvalidEvent as exc:
        await refuse(send, headers, "pixel", Reject(400, str(exc)))
        return
    except Reject as reject:
        await refuse(send, headers, "pixel", reject)
        return
    collector_answer("pixel", 200, "accepted" if kept else "bot").inc()
    await respond(send, 200, GIF, headers, content_type=b"image/gif")


# POST /api/events (servers) -----------------------------------------------------


async def batch_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    headers = request_headers(scope)
    if scope["method"] == "OPTIONS":
        await respond(send, 204, b"", headers, preflight=True)
        return
    try:
        if scope["method"] != "POST":
            raise Reject(405, "method not allowed: use POST", [(b"allow", b"POST, OPTIONS")])
        grant = await authorize(headers)
        raw = await read_body(scope, receive, headers, MAX_BATCH_BODY)
        body = parse_json(raw)
        items = body.get("events") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise Reject(400, "events: required, a non-empty list")
        if len(items) > MAX_BATCH_EVENTS:
            raise Reject(400, f"events: more than {MAX_BATCH_EVENTS} events")
        results, accepted, retry, reasons = await ingest_batch(grant, items, headers)
    except Reject as reject:
        await refuse(send, headers, "events", reject)
        return
    for (status, reason), count in Counter(zip((r["status"] for r in results), reasons, strict=True)).items():
        collector_answer("events", status, reason).inc(count)
    extra = [(b"retry-after", retry_after(retry).encode())] if retry else []
    duplicates = sum(1 for result in results if result.get("duplicate"))
    if accepted == len(items):
        await respond(send, 202, json.dumps({"accepted": accepted, "duplicates": duplicates}).encode(), headers)
    elif accepted:
        payload = {"accepted": accepted, "duplicates": duplicates, "results": results}
        await respond(send, 207, json.dumps(payload).encode(), headers, extra=extra)
    else:
        payload = {"error": "no event was accepted", "results": results}
        await respond(send, 400, json.dumps(payload).encode(), headers, extra=extra)


async def ingest_batch(
    grant: KeyGrant, items: list[Any], headers: dict[bytes, bytes]
) -> tuple[list[dict[str, Any]], int, float, list[str]]:
    """Validate each event; publish the accepted ones together. Returns (results, accepted, retry,
    the reason each result is counted under)."""
    now = time.time()
    now_us = int(now * 1_000_000)
    monotonic = time.monotonic()
    await ensure_salts(now)
    today_salt = visitors.SALTS.for_day(visitors.utc_day(now))
    account_id = grant.account_id
    results: list[dict[str, Any]] = []
    reasons: list[str] = []
    events: list[EnrichedEvent] = []
    claims: list[tuple[str, int, int]] = []  # (key, position in events, index in items)
    retry = 0.0
    for index, item in enumerate(items):
        try:
            event, page = parse(item, batch=True, now=now)
            sites = cached_sites(event) or await find_sites(event)
            sites = [site for site in sites if site.account_id == account_id]
            if not sites:
                raise Reject(404, "unknown site for this API key")
            for site in sites:
                admit(site, None, 1, monotonic)
        except InvalidEvent as exc:
            results.append({"index": index, "status": 400, "error": str(exc)})
            reasons.append("invalid")
            continue
        except Reject as reject:
            if reject.status == 503:  # the database is down: no event of the request can be looked up
                raise
            if reject.status == 429:
                retry = max(retry, 1.0)
            results.append({"index": index, "status": reject.status, "error": reject.message})
            reasons.append(reject.reason)
            continue
        agent = agents.parse_user_agent(event.user_agent)
        if agent.bot:
            for site in sites:
                BOT_DROPS[site.site_id] += 1
            results.append({"index": index, "status": 202, "dropped": "bot"})
            reasons.append("bot")
            continue
        if event.timestamp_us is None:
            ts_us = now_us
            salt = today_salt
        else:
            ts_us = event.timestamp_us
            salt = visitors.SALTS.for_day(visitors.utc_day_us(ts_us)) or today_salt
        if salt is None:
            raise unavailable()
        for site in sites:
            if event.visitor_id:
                visitor = visitors.client_visitor_id(site.site_id, event.visitor_id)
            else:
                visitor = visitors.visitor_id(salt, site.site_id, event.ip, event.user_agent)
            if event.client_id:
                event_id = str(uuid.uuid5(CLIENT_ID_NAMESPACE, f"{site.site_id}:{event.client_id}"))
                claims.append((f"{{s:{site.site_id}}}:eid:{event_id}", len(events), index))
            else:
                event_id = str(uuid_utils.uuid7())
            events.append(
                build_event(
                    site,
                    event,
                    page,
                    ts_us=ts_us,
                    event_id=event_id,
                    address=event.ip,
                    user_agent=event.user_agent,
                    agent=agent,
                    visitor=visitor,
                )
            )
        results.append({"index": index, "status": 202})
        reasons.append("accepted")
    claimed = await claim_client_ids(claims, events, results)
    try:
        await publish(events)
    except Reject:
        await release_client_ids(claimed)
        raise
    accepted = sum(1 for result in results if result["status"] == 202)
    reasons = [
        "duplicate" if result.get("duplicate") else reason for result, reason in zip(results, reasons, strict=True)
    ]
    return results, accepted, retry, reasons
