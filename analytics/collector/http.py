"""The collector's HTTP plumbing: ASGI types, the JSON error, CORS and the responses, bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from analytics.collector.ratelimit import retry_after

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


SERVICE_RETRY_AFTER = "2"


# The reason a refusal is counted under (spinnakr.metrics), by status unless the refusal names its own:
# a few fixed words, where the message may name a field or a domain.
REASONS = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "unknown_site",
    405: "method",
    413: "too_large",
    429: "rate_limited",
    503: "unavailable",
}


class Reject(Exception):
    def __init__(
        self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None, *, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        self.reason = reason or REASONS.get(status, "other")


def unavailable(message: str = "service unavailable, retry later") -> Reject:
    """503 with Retry-After: a server the collector needs (Redis, the broker) did not answer."""
    return Reject(503, message, [(b"retry-after", SERVICE_RETRY_AFTER.encode())])


def rate_limited(message: str, wait: float) -> Reject:
    """429 with Retry-After: the bucket refills after ``wait`` seconds."""
    return Reject(429, message, [(b"retry-after", retry_after(wait).encode())])


# Responses --------------------------------------------------------------------


def request_headers(scope: Scope) -> dict[bytes, bytes]:
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
