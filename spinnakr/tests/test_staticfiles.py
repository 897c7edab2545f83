"""The app serves its own static files with cache headers."""

from __future__ import annotations

import gzip
from typing import Any

import pytest

from spinnakr import staticfiles
from spinnakr.asgi import application

pytestmark = pytest.mark.anyio


async def get(
    path: str, headers: list[tuple[bytes, bytes]] | None = None, method: str = "GET"
) -> tuple[int, dict[bytes, bytes], bytes]:
    scope = {"type": "http", "method": method, "path": path, "headers": headers or [], "query_string": b""}
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await application(scope, receive, send)
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], dict(start["headers"]), body


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    staticfiles.clear_cache()


async def test_it_serves_a_static_file_with_an_etag_and_cache_control() -> None:
    status, headers, body = await get("/static/admin/css/base.css")

    assert status == 200
    assert headers[b"content-type"] == b"text/css; charset=utf-8"
    assert headers[b"cache-control"] == b"public, max-age=3600"
    assert headers[b"etag"].startswith(b'"')
    assert b"body" in body


async def test_it_compresses_text_for_clients_that_accept_gzip() -> None:
    status, headers, body = await get("/static/admin/css/base.css", [(b"accept-encoding", b"gzip, br")])

    assert status == 200
    assert headers[b"content-encoding"] == b"gzip"
    assert b"body" in gzip.decompress(body)


async def test_it_answers_304_when_the_etag_matches() -> None:
    _, headers, _ = await get("/static/admin/css/base.css")

    status, _, body = await get("/static/admin/css/base.css", [(b"if-none-match", headers[b"etag"])])

    assert status == 304
    assert body == b""


@pytest.mark.parametrize("path", ["/static/../settings.py", "/static//etc/passwd", "/static/admin/css/missing.css"])
async def test_it_answers_404_outside_the_static_files(path: str) -> None:
    status, _, _ = await get(path)

    assert status == 404


async def test_it_refuses_other_methods() -> None:
    status, headers, _ = await get("/static/admin/css/base.css", method="POST")

    assert status == 405
    assert headers[b"allow"] == b"GET, HEAD"
