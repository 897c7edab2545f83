"""The tracking snippet: its size, how it is served, and what it sends from a real browser."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext

from analytics.collector.snippet import snippet_version
from analytics.tests.collector_fixtures import BASE_DIR, BROWSER_UA, consume, events_of, free_port, make_site

SNIPPET = BASE_DIR / "static" / "build" / "script.js"


def test_the_built_snippet_is_at_most_1500_bytes_gzipped() -> None:
    size = len(gzip.compress(SNIPPET.read_bytes(), 9))

    assert 0 < size <= 1500


def test_the_snippet_uses_neither_cookies_nor_storage() -> None:
    source = SNIPPET.read_text()

    assert "cookie" not in source
    assert "localStorage" not in source
    assert "sessionStorage" not in source


@pytest.mark.django_db(transaction=True)
def test_it_serves_the_snippet_cross_origin_long_cached_when_versioned(collector: str) -> None:
    version = snippet_version()

    versioned = httpx.get(f"{collector}/js/script.js", params={"v": version}, headers={"accept-encoding": "gzip"})
    plain = httpx.get(f"{collector}/js/script.js")

    assert versioned.status_code == 200
    assert versioned.headers["content-type"].startswith("text/javascript") or versioned.headers[
        "content-type"
    ].startswith("application/javascript")
    assert versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert versioned.headers["access-control-allow-origin"] == "*"
    assert versioned.headers["content-encoding"] == "gzip"
    assert versioned.content == SNIPPET.read_bytes()
    assert plain.headers["cache-control"] == "public, max-age=3600"
    assert len(version) == 12


PAGE = """<!doctype html>
<html><head><title>Shop</title>
<script>
window.spinnakr = window.spinnakr || function () { (window.spinnakr.q = window.spinnakr.q || []).push(arguments) };
spinnakr('Queued', {props: {early: 'yes'}});
</script>
<script defer data-key="{key}" data-allow-localhost data-outbound-links src="{collector}/js/script.js"></script>
</head><body>
<a id="out" href="https://elsewhere.example/away">Elsewhere</a>
<button id="nav" onclick="history.pushState({}, '', '/spa/next')">Next</button>
</body></html>
"""


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A tiny web server on another port (another origin) serving the shop's page."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_browser_sends_pageviews_spa_navigation_custom_and_outbound_events(
    collector: str, page_server: tuple[str, Path], new_context: Callable[..., BrowserContext]
) -> None:
    site = make_site()
    origin, root = page_server
    (root / "index.html").write_text(PAGE.replace("{key}", site.site_key).replace("{collector}", collector))

    context = new_context(user_agent=BROWSER_UA)
    context.route("https://elsewhere.example/**", lambda route: route.fulfill(body="<p>away</p>"))
    page = context.new_page()
    page.goto(f"{origin}/index.html")
    page.wait_for_function("typeof window.spinnakr === 'function' && !window.spinnakr.q")
    page.click("#nav")
    page.evaluate("spinnakr('Signup', {props: {plan: 'pro'}, revenue: {amount: 9, currency: 'EUR'}})")
    page.click("#out")
    page.wait_for_url("https://elsewhere.example/away")

    def complete(messages: list) -> bool:
        names = {event["name"] for event in events_of(messages, site.id)}
        return {"pageview", "Signup", "Outbound Link: Click", "Queued"} <= names and len(
            [event for event in events_of(messages, site.id) if event["name"] == "pageview"]
        ) >= 2

    events = events_of(consume(complete, timeout=10), site.id)

    by_name: dict[str, list[dict[str, object]]] = {}
    for event in events:
        by_name.setdefault(str(event["name"]), []).append(event)
    assert sorted(str(event["pathname"]) for event in by_name["pageview"]) == ["/index.html", "/spa/next"]
    (signup,) = by_name["Signup"]
    assert signup["props"] == {"plan": "pro"}
    assert (signup["revenue_amount"], signup["revenue_currency"]) == ("9.0000", "EUR")
    (outbound,) = by_name["Outbound Link: Click"]
    assert outbound["props"] == {"url": "https://elsewhere.example/away"}
    assert by_name["Queued"][0]["props"] == {"early": "yes"}
    assert {event["browser"] for event in events} == {"Chrome"}
