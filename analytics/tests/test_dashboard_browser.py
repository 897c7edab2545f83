"""The live dashboard in headless Chromium, against the real app.

A uvicorn subprocess serves the whole ASGI app (collector, Django, Channels)
and a real Celery worker ingests what the collector queues, both against the
test database and Redis. Events go in through ``POST /api/event`` like any
visitor's; the page must change without a reload. Screenshots are kept under
``test-artifacts/``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Request

from analytics.tests.collector_fixtures import Server, start_server, stop_server
from analytics.tests.dashboard_fixtures import PASSWORD, Cast, cast
from spinnakr.tests.browser import shoot

__all__ = ["cast"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
WAIT_MS = 10_000


@dataclass
class LiveApp:
    url: str
    server: Server

    def send(self, domain: str, pathname: str, count: int = 1, name: str = "pageview", **extra: Any) -> None:
        """Send ``count`` events through the collector, each from its own visitor address."""
        with httpx.Client(base_url=self.url, timeout=5) as client:
            for _ in range(count):
                address = f"81.{128 + uuid.uuid4().int % 30}.{uuid.uuid4().int % 250}.{1 + uuid.uuid4().int % 250}"
                response = client.post(
                    "/api/event",
                    json={"name": name, "url": f"https://{domain}{pathname}", "domain": domain, **extra},
                    headers={"User-Agent": FIREFOX_UA, "X-Forwarded-For": address, "Content-Type": "text/plain"},
                )
                assert response.status_code == 202, response.text


@pytest.fixture
def live_app(
    cast: Cast, clean_events: None, celery_worker_factory: Callable[..., Any], tmp_path: Path
) -> Iterator[LiveApp]:
    """The app under uvicorn and a real worker, both on the test database."""
    celery_worker_factory()
    server = start_server(tmp_path)
    yield LiveApp(server.url, server)
    stop_server(server)


@pytest.fixture
def context(new_context: Callable[..., BrowserContext]) -> BrowserContext:
    """A fresh desktop-sized profile."""
    return new_context(viewport={"width": 1280, "height": 1000})


def log_in(page: Page, app: LiveApp, email: str) -> None:
    page.goto(f"{app.url}/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_load_state("networkidle")


def open_dashboard(page: Page, app: LiveApp, query: str = "period=day") -> None:
    page.goto(f"{app.url}/sites/dash.example/?{query}")
    page.wait_for_selector("#live-status[data-state=live]", timeout=WAIT_MS)
    page.wait_for_function("document.querySelector('[data-metric=pageviews]').dataset.value !== ''", timeout=WAIT_MS)
    page.wait_for_load_state("networkidle")


def metric(page: Page, name: str) -> str:
    return page.locator(f"[data-metric={name}]").get_attribute("data-value") or ""


def test_the_dashboard_follows_events_sent_to_the_collector_without_reload(
    live_app: LiveApp, context: BrowserContext
) -> None:
    page = context.new_page()
    log_in(page, live_app, "owner@dash.test")
    open_dashboard(page, live_app)
    assert metric(page, "pageviews") == "0"
    assert page.locator("#main-chart").get_attribute("data-total") == "0"
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    live_app.send("dash.example", "/pricing", count=3)

    page.wait_for_function("document.querySelector('[data-metric=pageviews]').dataset.value === '3'", timeout=WAIT_MS)
    page.wait_for_function("document.querySelector('#main-chart').dataset.total === '3'", timeout=WAIT_MS)
    page.wait_for_selector("#stream li.stream-row", timeout=WAIT_MS)
    assert navigations == []
    assert page.locator("#stream .stream-path").first.inner_text() == "/pricing"
    shoot(page, "dashboard-live")


def test_an_idle_dashboard_sends_no_http_request(live_app: LiveApp, context: BrowserContext) -> None:
    page = context.new_page()
    page.clock.install()  # the page's timers run on a clock the test moves
    log_in(page, live_app, "teammate@dash.test")
    open_dashboard(page, live_app, "period=realtime")
    requests: list[str] = []

    def record(request: Request) -> None:
        requests.append(f"{request.method} {request.url}")

    page.on("request", record)
    page.clock.run_for(12_000)  # past the realtime chart's 10-s clock tick
    page.evaluate("() => 0")  # a round trip: whatever the timers sent has been reported
    assert requests == []
    assert page.locator("#live-status").get_attribute("data-state") == "live"


def test_clicking_a_breakdown_row_filters_the_dashboard_and_the_url(live_app: LiveApp, context: BrowserContext) -> None:
    live_app.send("dash.example", "/pricing", count=2)
    live_app.send("dash.example", "/blog", count=5)
    page = context.new_page()
    log_in(page, live_app, "owner@dash.test")
    page.goto(f"{live_app.url}/sites/dash.example/?period=day")
    page.wait_for_function("document.querySelector('[data-metric=pageviews]').dataset.value === '7'", timeout=WAIT_MS)

    page.locator('[data-panel=pages] li.row[data-key="/pricing"] button').click()

    page.wait_for_function("document.querySelector('[data-metric=pageviews]').dataset.value === '2'", timeout=WAIT_MS)
    assert "f=event%3Apage%3D%3D%2Fpricing" in page.url
    chip = page.locator("#filters .chip")
    assert chip.count() == 1
    assert chip.get_attribute("data-value") == "/pricing"
    shoot(page, "dashboard-filtered")

    chip.locator("button").click()
    page.wait_for_function("document.querySelector('[data-metric=pageviews]').dataset.value === '7'", timeout=WAIT_MS)
    assert "f=" not in page.url


def test_the_url_restores_a_shared_view(live_app: LiveApp, context: BrowserContext) -> None:
    live_app.send("dash.example", "/pricing", count=1)
    live_app.send("dash.example", "/blog", count=2)
    page = context.new_page()
    log_in(page, live_app, "teammate@dash.test")
    page.goto(f"{live_app.url}/sites/dash.example/?period=7d&compare=1&f=event%3Apage%3D%3D%2Fblog")
    page.wait_for_function("document.querySelector('[data-metric=pageviews]').dataset.value === '2'", timeout=WAIT_MS)
    assert page.locator("#period").input_value() == "7d"
    assert page.locator("#compare").is_checked()
    assert page.locator("#filters .chip").get_attribute("data-value") == "/blog"


def test_an_outsider_gets_404_and_a_refused_socket(live_app: LiveApp, context: BrowserContext) -> None:
    page = context.new_page()
    log_in(page, live_app, "outsider@elsewhere.test")
    response = page.goto(f"{live_app.url}/sites/dash.example/")
    assert response is not None
    assert response.status == 404
    outcome = page.evaluate(
        """(path) => new Promise((resolve) => {
            const ws = new WebSocket(`ws://${location.host}${path}`);
            ws.onopen = () => resolve("opened");
            ws.onclose = (event) => resolve(`closed ${event.code}`);
        })""",
        "/ws/sites/dash.example/",
    )
    assert outcome == "closed 1006"  # the handshake is refused: the browser never sees the socket open


def test_the_dashboard_fits_a_phone_in_the_dark(live_app: LiveApp, new_context: Callable[..., BrowserContext]) -> None:
    live_app.send("dash.example", "/", count=2)
    ctx = new_context(viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True)
    page = ctx.new_page()
    log_in(page, live_app, "owner@dash.test")
    open_dashboard(page, live_app)
    width = page.evaluate("document.documentElement.scrollWidth")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    shoot(page, "dashboard-phone-dark")
    assert width <= 390
    assert background == "rgb(15, 17, 21)"


def test_the_overview_shows_every_site_live(live_app: LiveApp, context: BrowserContext) -> None:
    page = context.new_page()
    log_in(page, live_app, "owner@dash.test")
    page.goto(f"{live_app.url}/sites/")
    page.wait_for_selector("#live-status[data-state=live]", timeout=WAIT_MS)
    card = page.locator('[data-domain="dash.example"]')
    assert page.locator("[data-domain]").count() == 2

    live_app.send("dash.example", "/", count=2)

    page.wait_for_function(
        """document.querySelector('[data-domain="dash.example"] [data-metric=visitors_now]').dataset.value === '2'""",
        timeout=WAIT_MS,
    )
    assert card.locator(".sparkline svg path.line").count() == 1
    shoot(page, "overview-live")


def test_a_lost_socket_reconnects_and_resynchronises(live_app: LiveApp, context: BrowserContext) -> None:
    page = context.new_page()
    log_in(page, live_app, "owner@dash.test")
    open_dashboard(page, live_app)
    queries: list[str] = []
    page.on("request", lambda request: queries.append(request.url))
    states: list[str] = page.evaluate(
        """() => {
            window.__states = [];
            new MutationObserver(() => window.__states.push(document.getElementById('live-status').dataset.state))
                .observe(document.getElementById('live-status'), {attributes: true, attributeFilter: ['data-state']});
            window.spinnakrDashboard.socket.ws.close();
            return window.__states;
        }"""
    )
    assert states == []
    # Events sent around the gap are on the page once it has reconnected and refetched.
    live_app.send("dash.example", "/gap", count=2)
    page.wait_for_function("window.__states.includes('reconnecting') && window.__states.at(-1) === 'live'")
    page.wait_for_function("document.querySelector('[data-metric=pageviews]').dataset.value === '2'", timeout=WAIT_MS)
    assert f"{live_app.url}/sites/dash.example/query" in queries


def test_a_delta_naming_a_batch_seen_before_is_dropped(live_app: LiveApp, context: BrowserContext) -> None:
    page = context.new_page()
    log_in(page, live_app, "owner@dash.test")
    open_dashboard(page, live_app)

    # A group's delta, then a batch of that group delivered again alone (its worker died before
    # the acknowledgement), then a new batch, then a delta from before batch_ids existed.
    kept = page.evaluate(
        """() => {
            const socket = window.spinnakrDashboard.socket;
            const kept = [];
            socket.onMessage = (data) => kept.push(data.batch_id);
            const deliver = (batch_id, batch_ids) =>
                socket.ws.onmessage({data: JSON.stringify({type: 'delta', batch_id, batch_ids, counts: {}})});
            deliver('gab', ['a', 'b']);
            deliver('b', ['b']);
            deliver('c', ['c']);
            deliver('old', undefined);
            deliver('old', undefined);
            return kept;
        }"""
    )

    assert kept == ["gab", "c", "old"]


def test_the_freshness_indicator_says_when_events_were_last_applied_and_their_lag(
    live_app: LiveApp, new_context: Callable[..., BrowserContext]
) -> None:
    light = new_context(viewport={"width": 1280, "height": 800})
    page = light.new_page()
    log_in(page, live_app, "owner@dash.test")
    open_dashboard(page, live_app)
    assert page.locator("#freshness").get_attribute("data-state") == "none"

    live_app.send("dash.example", "/pricing", count=2)

    page.wait_for_selector("#freshness[data-state=fresh]", timeout=WAIT_MS)
    assert re.fullmatch(r"updated \d+s ago · lag \d+(\.\d)? (ms|s|min)", page.inner_text("#freshness"))
    shoot(page, "dashboard-freshness-light")
    dark = new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    page = dark.new_page()
    log_in(page, live_app, "owner@dash.test")
    open_dashboard(page, live_app)
    assert page.locator("#freshness").get_attribute("data-state") == "fresh"
    assert page.inner_text("#freshness").startswith("updated ")
    shoot(page, "dashboard-freshness-dark")
