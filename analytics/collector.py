"""The collector: lean ASGI handlers for the hot path, in front of Django.

- ``POST /api/event``: one event, wire-compatible with Plausible's Events API.
- ``POST /api/events``: a batch from a server, authenticated by an API key with ``events:write``.
- ``GET /api/pixel/<site key>.gif``: the no-JavaScript fallback, records a pageview.
- ``GET /js/script.js``: the tracking snippet (``?v=<version>`` makes it immutable for a year).

No ORM query and no Redis round trip per request: sites come from
``analytics.sitecache``, rate limits from in-process token buckets, salts
from memory; the only I/O is the group-committed publish (``analytics.publish``).
Every response, errors included, carries CORS headers. Errors are JSON
``{"error": "…"}`` naming the problem:

- 400 malformed body or an invalid field (named), including text PostgreSQL cannot store (a
  NUL or a lone surrogate, in any field, header or decoded query value the event keeps),
  404 unknown domain or key,
  403 origin outside the site's allowed origins, 403 ``account suspended``,
  403 ``monthly event quota exceeded`` (``analytics.quota``: past 110% of the
  quota), 413 body too large, 429 rate limited (Retry-After), 503 broker or
  Redis unreachable (Retry-After). Bots get 202 and are dropped, counted per
  site in Redis ``{s:<id>}:dropped:bots``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hashlib
import ipaddress
import json
import logging
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import redis.asyncio as aioredis
import uuid_utils
from django.conf import settings
from django.db import InterfaceError, OperationalError

from analytics import enrich, sitecache
from analytics.payloads import (
    UNSTORABLE,
    EnrichedEvent,
    IncomingEvent,
    InvalidEvent,
    check_storable,
    parse_event,
)
from analytics.publish import PUBLISHER, PublishError
from analytics.ratelimit import TokenBuckets, retry_after
from analytics.sitecache import CACHE, SiteInfo
from spinnakr.aio import cancel_all

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_EVENT_BODY = 16 * 1024
MAX_BATCH_BODY = 1024 * 1024
MAX_BATCH_EVENTS = 1000
KEY_CACHE_TTL = 30.0
KEY_NEGATIVE_TTL = 5.0
SERVICE_RETRY_AFTER = "2"
# Event ids of client-supplied ids: uuid5 of (site, id) in this namespace.
CLIENT_ID_NAMESPACE = uuid.UUID("6b2f0c5e-8d1a-4a8e-9d0b-5f3c2a1e7b44")
GIF = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")

IP_BUCKETS = TokenBuckets(settings.COLLECTOR_RATE_PER_IP, settings.COLLECTOR_BURST_PER_IP)
SITE_BUCKETS = TokenBuckets(1.0, 1.0, max_keys=100_000)  # rates come from each site's plan
BOT_DROPS: Counter[int] = Counter()


class Reject(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


# Responses --------------------------------------------------------------------


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # Later duplicates win except for X-Forwarded-For, which is read raw below.
    return dict(scope.get("headers", []))


# Preflight answers name what a cross-origin request may do; the other responses only need
# the origin allowed (and, when they carry Retry-After, that header exposed to the page).
_PREFLIGHT = [
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type, Authorization"),
    (b"access-control-max-age", b"86400"),
]
_EXPOSE_RETRY_AFTER = (b"access-control-expose-headers", b"Retry-After")


def cors_headers(headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", headers.get(b"origin") or b"*"), (b"vary", b"Origin")]


# The collector's usual answer to a request without an Origin header (servers, wrk): built once.
_ACCEPTED_NO_ORIGIN = [
    (b"content-type", b"application/json"),
    (b"content-length", b"2"),
    (b"cache-control", b"no-store"),
    *cors_headers({}),
]


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: dict[bytes, bytes],
    *,
    content_type: bytes = b"application/json",
    extra: list[tuple[bytes, bytes]] | None = None,
    preflight: bool = False,
) -> None:
    response = [
        (b"content-type", content_type),
        (b"content-length", b"%d" % len(body)),
        (b"cache-control", b"no-store"),
        *cors_headers(headers),
    ]
    if preflight:
        response += _PREFLIGHT
    if extra:
        response += extra
        if any(name == b"retry-after" for name, _ in extra):
            response.append(_EXPOSE_RETRY_AFTER)
    await send({"type": "http.response.start", "status": status, "headers": response})
    await send({"type": "http.response.body", "body": body})


async def respond_accepted(send: Send, headers: dict[bytes, bytes]) -> None:
    """202 ``{}``, the answer to almost every request of the hot path."""
    if b"origin" in headers:
        await respond(send, 202, b"{}", headers)
        return
    await send({"type": "http.response.start", "status": 202, "headers": _ACCEPTED_NO_ORIGIN})
    await send({"type": "http.response.body", "body": b"{}"})


async def respond_error(send: Send, headers: dict[bytes, bytes], reject: Reject) -> None:
    body = json.dumps({"error": reject.message}).encode()
    await respond(send, reject.status, body, headers, extra=reject.headers)


async def read_body(scope: Scope, receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Reject(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Reject(400, "body: client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Reject(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    # Plausible's tracker sends text/plain and its curl example no type: JSON whatever the type.
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise Reject(400, "body: not valid JSON") from None


# Client address ---------------------------------------------------------------

Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network]
_trusted: Networks = [ipaddress.ip_network(item, strict=False) for item in settings.TRUSTED_PROXIES]


def _in(address: str, networks: Networks) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def _clean_address(value: str) -> str | None:
    """The canonical text of an IPv4 or IPv6 address (a port stripped), or None."""
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    # inet_pton is C and strict (no leading zeros, no zone ids): ipaddress costs 20x more.
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, value))
    except (OSError, ValueError):
        return None


def _forwarded_for(scope: Scope) -> str | None:
    values = [value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-forwarded-for"]
    return ",".join(values) if values else None


def client_address(scope: Scope, trusted: Networks | None = None) -> str:
    """The address that sent the request.

    With no trusted proxies configured, the leftmost X-Forwarded-For entry of any peer (as
    Plausible reads it for server-side senders). With trusted proxies, only a trusted peer's
    header counts, and it is read from the right past the trusted proxies' own entries: load
    balancers append to the header, so the entries left of the first untrusted one are the
    client's to forge.
    """
    networks = _trusted if trusted is None else trusted
    client = scope.get("client")
    peer = client[0] if client else ""
    header = _forwarded_for(scope)
    if header is None:
        return peer
    if not networks:
        first = _clean_address(header.split(",", 1)[0])
        return peer if first is None else first
    if not _in(peer, networks):
        return peer
    address = peer
    for entry in reversed(header.split(",")):
        forwarded = _clean_address(entry)
        if forwarded is None:
            break  # a malformed entry: nothing left of it can be believed
        address = forwarded
        if not _in(address, networks):
            break
    return address


# Salts ------------------------------------------------------------------------


async def ensure_salts(now: float) -> None:
    today = enrich.utc_day(now)
    if enrich.SALTS.fresh(today):
        return
    try:
        await asyncio.get_running_loop().run_in_executor(None, enrich.SALTS.load, today)
    except Exception:
        logger.warning("collector.salts_unavailable", exc_info=True)
        raise Reject(
            503, "service unavailable, retry later", [(b"retry-after", SERVICE_RETRY_AFTER.encode())]
        ) from None


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
    agent: enrich.Agent,
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
        "referrer": acquisition.referrer,
        "referrer_source": acquisition.source,
        "channel": acquisition.channel,
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
        "screen": enrich.screen_class(event.width),
        "props": event.props,
        "revenue_amount": event.revenue_amount,
        "revenue_currency": event.revenue_currency,
        "interactive": event.interactive,
        "scroll_depth": event.scroll_depth,
        "engagement_ms": event.engagement_ms,
    }


def cached_sites(event: IncomingEvent) -> list[SiteInfo] | None:
    """The event's site when the cache knows it without waiting, else None (``find_sites`` decides)."""
    if event.key:
        site = CACHE.peek("site_key", event.key)
    elif len(event.domains) == 1:
        site = CACHE.peek("domain", event.domains[0])
    else:
        return None
    return [site] if isinstance(site, SiteInfo) else None


async def lookup_site(field: str, value: str) -> SiteInfo | None:
    """The cache's answer; 503 while the database it asks on a miss is unreachable."""
    try:
        return await CACHE.get(field, value)
    except (OperationalError, InterfaceError):
        logger.warning("collector.sites_unavailable", extra={"field": field}, exc_info=True)
        raise Reject(
            503, "service unavailable, retry later", [(b"retry-after", SERVICE_RETRY_AFTER.encode())]
        ) from None


async def find_sites(event: IncomingEvent) -> list[SiteInfo]:
    if event.key:
        site = await lookup_site("site_key", event.key)
        if site is None:
            raise Reject(404, "unknown site key")
        return [site]
    sites = []
    for domain in event.domains:
        site = await lookup_site("domain", domain)
        if site is not None and site not in sites:
            sites.append(site)
    if not sites:
        raise Reject(404, f"unknown domain: {event.domains[0]}" if len(event.domains) == 1 else "unknown domains")
    return sites


def admit(site: SiteInfo, origin: str | None, count: int, now: float) -> None:
    """Refuse an event the site may not take now (origin, suspension, quota, rate)."""
    if not site.origin_allowed(origin):
        raise Reject(403, f"origin not allowed for {site.domain}")
    if site.suspended:
        raise Reject(403, "account suspended")
    if CACHE.is_over_quota(site.account_id):
        raise Reject(403, "monthly event quota exceeded")
    rate, burst = site.rate
    wait = SITE_BUCKETS.take(site.site_id, count, rate=rate, burst=burst, now=now)
    if wait:
        raise Reject(429, f"rate limit exceeded for {site.domain}", [(b"retry-after", retry_after(wait).encode())])


async def publish(events: list[EnrichedEvent]) -> None:
    try:
        await PUBLISHER.submit(events)
    except PublishError:
        raise Reject(503, "queue unavailable, retry later", [(b"retry-after", SERVICE_RETRY_AFTER.encode())]) from None


# POST /api/event ----------------------------------------------------------------


async def record(
    scope: Scope,
    headers: dict[bytes, bytes],
    event: IncomingEvent,
    page: enrich.Page,
    address: str,
    user_agent: str,
) -> None:
    """Admit, enrich and publish one browser event for each of its sites (raises Reject)."""
    sites = cached_sites(event) or await find_sites(event)
    origin_header = headers.get(b"origin")
    origin = origin_header.decode("latin-1") if origin_header else None
    now = time.time()
    monotonic = time.monotonic()
    for site in sites:
        admit(site, origin, 1, monotonic)
    agent = enrich.parse_user_agent(user_agent)
    if agent.bot:
        for site in sites:
            BOT_DROPS[site.site_id] += 1
        return
    today = enrich.utc_day(now)
    if not enrich.SALTS.fresh(today):
        await ensure_salts(now)
    salt = enrich.SALTS.for_day(today)
    if salt is None:  # the day turned between the two calls: next request reloads
        raise Reject(503, "service unavailable, retry later", [(b"retry-after", SERVICE_RETRY_AFTER.encode())])
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
            visitor=enrich.visitor_id(salt, site.site_id, address, user_agent),
        )
        for site in sites
    ]
    await publish(events)


async def event_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    headers = _headers(scope)
    method = scope["method"]
    if method == "OPTIONS":
        await respond(send, 204, b"", headers, preflight=True)
        return
    try:
        if method != "POST":
            raise Reject(405, "method not allowed: use POST", [(b"allow", b"POST, OPTIONS")])
        address = client_address(scope)
        wait = IP_BUCKETS.take(address)
        if wait:
            raise Reject(429, "rate limit exceeded for this address", [(b"retry-after", retry_after(wait).encode())])
        raw = await read_body(scope, receive, headers, MAX_EVENT_BODY)
        event, page = parse(parse_json(raw))
        user_agent = check_storable(headers.get(b"user-agent", b"").decode("latin-1"), "user-agent")
        await record(scope, headers, event, page, address, user_agent)
    except InvalidEvent as exc:
        await respond_error(send, headers, Reject(400, str(exc)))
        return
    except Reject as reject:
        await respond_error(send, headers, reject)
        return
    await respond_accepted(send, headers)


# GET /api/pixel/<site key>.gif --------------------------------------------------


async def pixel_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    headers = _headers(scope)
    try:
        if scope["method"] not in {"GET", "HEAD"}:
            raise Reject(405, "method not allowed: use GET", [(b"allow", b"GET, HEAD")])
        name = scope["path"][len("/api/pixel/") :]
        if not name.endswith(".gif") or "/" in name or len(name) > 104:
            raise Reject(404, "unknown site key")
        key = check_storable(name[: -len(".gif")], "key")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        address = client_address(scope)
        wait = IP_BUCKETS.take(address)
        if wait:
            raise Reject(429, "rate limit exceeded for this address", [(b"retry-after", retry_after(wait).encode())])
        site = await lookup_site("site_key", key)
        if site is None:
            raise Reject(404, "unknown site key")
        page_url = query.get("u") or headers.get(b"referer", b"").decode("latin-1") or f"https://{site.domain}/"
        body: dict[str, Any] = {"name": "pageview", "url": page_url[:2000], "key": key, "referrer": query.get("r")}
        if query.get("w", "").isdigit():
            body["w"] = int(query["w"])
        event, page = parse(body)
        user_agent = check_storable(headers.get(b"user-agent", b"").decode("latin-1"), "user-agent")
        await record(scope, headers, event, page, address, user_agent)
    except InvalidEvent as exc:
        await respond_error(send, headers, Reject(400, str(exc)))
        return
    except Reject as reject:
        await respond_error(send, headers, reject)
        return
    await respond(send, 200, GIF, headers, content_type=b"image/gif")


# POST /api/events (servers) -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KeyGrant:
    account_id: int
    scopes: frozenset[str]


_key_cache: dict[str, tuple[KeyGrant | None, float]] = {}


def _authenticate(raw: str) -> KeyGrant | None:
    from django.db import connection

    from accounts.access import authenticate_bearer

    try:
        key = authenticate_bearer(raw)
        return None if key is None else KeyGrant(key.account_id, frozenset(key.scopes))
    finally:
        # Once per key per KEY_CACHE_TTL: no idle connection left in the executor's threads.
        connection.close()


async def authorize(headers: dict[bytes, bytes]) -> KeyGrant:
    scheme, _, raw = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    unauthorized = [(b"www-authenticate", b"Bearer")]
    if scheme.lower() != "bearer" or not raw.strip():
        raise Reject(401, "API key required: Authorization: Bearer <key>", unauthorized)
    raw = raw.strip()
    digest = hashlib.sha256(raw.encode()).hexdigest()
    now = time.monotonic()
    cached = _key_cache.get(digest)
    if cached is not None and cached[1] > now:
        grant = cached[0]
    else:
        try:
            grant = await asyncio.get_running_loop().run_in_executor(None, _authenticate, raw)
        except (OperationalError, InterfaceError):
            logger.warning("collector.keys_unavailable", exc_info=True)
            raise Reject(
                503, "service unavailable, retry later", [(b"retry-after", SERVICE_RETRY_AFTER.encode())]
            ) from None
        if len(_key_cache) > 10_000:
            _key_cache.clear()
        _key_cache[digest] = (grant, now + (KEY_CACHE_TTL if grant else KEY_NEGATIVE_TTL))
    if grant is None:
        raise Reject(401, "invalid, revoked or expired API key", unauthorized)
    if "events:write" not in grant.scopes:
        raise Reject(403, "the API key lacks the events:write scope")
    return grant


async def batch_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    headers = _headers(scope)
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
        results, accepted, retry = await ingest_batch(grant, items, headers)
    except Reject as reject:
        await respond_error(send, headers, reject)
        return
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
) -> tuple[list[dict[str, Any]], int, float]:
    """Validate each event; publish the accepted ones together. Returns (results, accepted, retry)."""
    now = time.time()
    now_us = int(now * 1_000_000)
    monotonic = time.monotonic()
    await ensure_salts(now)
    today_salt = enrich.SALTS.for_day(enrich.utc_day(now))
    account_id = grant.account_id
    results: list[dict[str, Any]] = []
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
            continue
        except Reject as reject:
            if reject.status == 503:  # the database is down: no event of the request can be looked up
                raise
            if reject.status == 429:
                retry = max(retry, 1.0)
            results.append({"index": index, "status": reject.status, "error": reject.message})
            continue
        agent = enrich.parse_user_agent(event.user_agent)
        if agent.bot:
            for site in sites:
                BOT_DROPS[site.site_id] += 1
            results.append({"index": index, "status": 202, "dropped": "bot"})
            continue
        if event.timestamp_us is None:
            ts_us = now_us
            salt = today_salt
        else:
            ts_us = event.timestamp_us
            salt = enrich.SALTS.for_day(enrich.utc_day_us(ts_us)) or today_salt
        if salt is None:
            raise Reject(503, "service unavailable, retry later", [(b"retry-after", SERVICE_RETRY_AFTER.encode())])
        for site in sites:
            if event.visitor_id:
                visitor = enrich.client_visitor_id(site.site_id, event.visitor_id)
            else:
                visitor = enrich.visitor_id(salt, site.site_id, event.ip, event.user_agent)
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
    claimed = await claim_client_ids(claims, events, results)
    try:
        await publish(events)
    except Reject:
        await release_client_ids(claimed)
        raise
    accepted = sum(1 for result in results if result["status"] == 202)
    return results, accepted, retry


# Client ids: an event sent again within CLIENT_ID_TTL is accepted and not published twice.
# One pipelined SET NX per batch request (never on /api/event); a claim is released when
# the publish fails, so a retry is never mistaken for a duplicate.
CLIENT_ID_TTL = 25 * 3600
_id_client: aioredis.Redis | None = None


def _ids_redis() -> aioredis.Redis:
    global _id_client
    if _id_client is None:
        _id_client = aioredis.Redis.from_url(settings.REDIS_DATA_URL, socket_timeout=5)
    return _id_client


async def claim_client_ids(
    claims: list[tuple[str, int, int]], events: list[EnrichedEvent], results: list[dict[str, Any]]
) -> list[str]:
    """Claim each client id; drop from ``events`` those already claimed (marking their results)."""
    if not claims:
        return []
    try:
        async with _ids_redis().pipeline(transaction=False) as pipe:
            for key, _, _ in claims:
                pipe.set(key, "1", nx=True, ex=CLIENT_ID_TTL)
            answers = await pipe.execute()
    except Exception:
        logger.warning("collector.client_ids_unavailable", exc_info=True)
        raise Reject(
            503, "service unavailable, retry later", [(b"retry-after", SERVICE_RETRY_AFTER.encode())]
        ) from None
    duplicates = {position for (_, position, _), fresh in zip(claims, answers, strict=True) if not fresh}
    for (_, _, index), fresh in zip(claims, answers, strict=True):
        if not fresh:
            results[index]["duplicate"] = True
    events[:] = [event for position, event in enumerate(events) if position not in duplicates]
    return [key for (key, _, _), fresh in zip(claims, answers, strict=True) if fresh]


async def release_client_ids(keys: list[str]) -> None:
    if not keys:
        return
    try:
        await _ids_redis().delete(*keys)
    except Exception:
        logger.exception("collector.client_ids_not_released", extra={"keys": len(keys)})


# GET /js/script.js --------------------------------------------------------------

SNIPPET_PATH = "build/script.js"


def snippet_version() -> str:
    """The version of the built snippet, for tags: ``/js/script.js?v=<version>``."""
    from spinnakr import staticfiles

    static = staticfiles.load(SNIPPET_PATH)
    return "" if static is None else static.etag.strip('"')[:12]


async def script_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    from spinnakr import staticfiles

    static = staticfiles.load(SNIPPET_PATH)
    extra = [(b"access-control-allow-origin", b"*"), (b"cross-origin-resource-policy", b"cross-origin")]
    if static is not None:
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        versioned = query.get("v") == static.etag.strip('"')[:12]
        static = dataclasses.replace(
            static,
            cache_control="public, max-age=31536000, immutable" if versioned else "public, max-age=3600",
        )
    await staticfiles.serve(scope, receive, send, static, extra_headers=extra)


# Background work of each web process ------------------------------------------

_tasks: list[asyncio.Task[None]] = []


async def flush_bot_drops(client: aioredis.Redis) -> None:
    if not BOT_DROPS:
        return
    drops = dict(BOT_DROPS)
    BOT_DROPS.clear()
    try:
        async with client.pipeline(transaction=False) as pipe:
            for site_id, count in drops.items():
                pipe.incrby(f"{{s:{site_id}}}:dropped:bots", count)
            await pipe.execute()
    except Exception:
        BOT_DROPS.update(drops)
        logger.warning("collector.bot_flush_failed", exc_info=True)


async def _bot_loop() -> None:
    client = aioredis.Redis.from_url(settings.REDIS_DATA_URL)
    try:
        while True:
            await asyncio.sleep(settings.COLLECTOR_FLUSH_SECONDS)
            await flush_bot_drops(client)
    finally:
        await flush_bot_drops(client)
        await client.aclose()


def warm_up() -> None:
    """Build what the first request would otherwise build on the event loop (ua-parser's matchers: ~0.4 s)."""
    enrich.parse_user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0")
    enrich.country("192.0.2.1")
    enrich.acquisition("https://www.google.com/", enrich.parse_page("https://example.com/?utm_source=x"))


async def startup() -> None:
    warm_up()
    # Everything loaded so far lives for the process: keep the collector's
    # short-lived garbage from making the cyclic GC walk it.
    gc.freeze()
    await sitecache.start()
    await PUBLISHER.start()
    with contextlib.suppress(Reject):
        await ensure_salts(time.time())
    _tasks.append(asyncio.create_task(_bot_loop(), name="collector.bots"))


async def shutdown() -> None:
    await cancel_all(_tasks)
    await PUBLISHER.stop()
    await sitecache.stop()


HTTP_ROUTES = {
    "/api/event": event_endpoint,
    "/api/event/": event_endpoint,
    "/api/events": batch_endpoint,
    "/api/events/": batch_endpoint,
    "/js/script.js": script_endpoint,
}
HTTP_PREFIX_ROUTES = {"/api/pixel/": pixel_endpoint}
STARTUP = [startup]
SHUTDOWN = [shutdown]
