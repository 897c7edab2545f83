"""A lean ASGI handler for static files, so the app serves its own assets.

Files are found with Django's staticfiles finders (the built bundle in
``static/`` and the apps' static folders), read once and kept in memory.
Names that carry a content hash get a year of caching; others an hour with an
ETag for cheap revalidation.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.staticfiles import finders

Scope = dict[str, Any]
HASHED_NAME = re.compile(r"\.[0-9a-f]{8,}\.|[.-][A-Z0-9]{8}\.")
MAX_CACHED_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str
    cache_control: str


_cache: dict[str, StaticFile | None] = {}


def load(relative: str, *, immutable: bool | None = None) -> StaticFile | None:
    if relative in _cache:
        return _cache[relative]
    found = None
    if ".." not in Path(relative).parts and not relative.startswith("/"):
        result = finders.find(relative)
        found = result if isinstance(result, str) else None
    if found is None or not Path(found).is_file() or Path(found).stat().st_size > MAX_CACHED_BYTES:
        _cache[relative] = None
        return None
    body = Path(found).read_bytes()
    content_type = mimetypes.guess_type(found)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in {
        "application/javascript",
        "image/svg+xml",
        "application/json",
    }:
        content_type += "; charset=utf-8"
        gzipped: bytes | None = gzip.compress(body, 9, mtime=0)
    else:
        gzipped = None
    if immutable is None:
        immutable = bool(HASHED_NAME.search(Path(relative).name))
    cache_control = "public, max-age=31536000, immutable" if immutable else "public, max-age=3600"
    static = StaticFile(
        body=body,
        gzipped=gzipped,
        content_type=content_type,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        cache_control=cache_control,
    )
    _cache[relative] = static
    return static


def clear_cache() -> None:
    _cache.clear()


async def serve(
    scope: Scope,
    receive: Any,
    send: Any,
    static: StaticFile | None,
    *,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    if static is None:
        await _respond(send, 404, b"text/plain; charset=utf-8", b"not found\n", [])
        return
    if scope["method"] not in {"GET", "HEAD"}:
        await _respond(send, 405, b"text/plain; charset=utf-8", b"method not allowed\n", [(b"allow", b"GET, HEAD")])
        return
    headers = {name.lower(): value for name, value in scope.get("headers", [])}
    common = [
        (b"cache-control", static.cache_control.encode()),
        (b"etag", static.etag.encode()),
        (b"vary", b"Accept-Encoding"),
        (b"x-content-type-options", b"nosniff"),
        *(extra_headers or []),
    ]
    if headers.get(b"if-none-match", b"") == static.etag.encode():
        await send({"type": "http.response.start", "status": 304, "headers": common})
        await send({"type": "http.response.body", "body": b""})
        return
    body = static.body
    if static.gzipped is not None and b"gzip" in headers.get(b"accept-encoding", b""):
        body = static.gzipped
        common.append((b"content-encoding", b"gzip"))
    if scope["method"] == "HEAD":
        await _respond(send, 200, static.content_type.encode(), b"", common, length=len(body))
        return
    await _respond(send, 200, static.content_type.encode(), body, common)


async def _respond(
    send: Any,
    status: int,
    content_type: bytes,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    length: int | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body) if length is None else length).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
