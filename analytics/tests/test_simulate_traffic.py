"""``manage.py simulate_traffic``: realistic visits, sent through the real collector."""

from __future__ import annotations

import io
import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import iptocc
import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from analytics.management.commands.simulate_traffic import COUNTRY_BLOCKS, Simulator, country_address
from analytics.tests.collector_fixtures import Server, start_server, stop_server
from analytics.tests.dashboard_fixtures import Cast, cast
from spinnakr.tests.waiting import wait_for

__all__ = ["cast"]


def drawn(count: int, seed: int = 7) -> list[tuple[Any, dict[str, Any]]]:
    simulator = Simulator("shop.example", random.Random(seed), think=5.0)
    # One event every 50 ms of simulated time: visits overlap and come back for more pages.
    return [simulator.next_event(index * 0.05) for index in range(count)]


def test_each_country_address_maps_back_to_its_country() -> None:
    rng = random.Random(3)
    for country in COUNTRY_BLOCKS:
        assert {iptocc.country_code(country_address(rng, country)) for _ in range(10)} == {country}


def test_visits_have_several_pages_from_one_visitor() -> None:
    pages_per_visitor: dict[tuple[str, str], int] = defaultdict(int)
    for visit, body in drawn(2000):
        if body["name"] == "pageview":
            pages_per_visitor[(visit.ip, visit.user_agent)] += 1
    counts = Counter(min(pages, 3) for pages in pages_per_visitor.values())
    assert counts[1] > 0
    assert counts[3] > 0
    assert len(pages_per_visitor) > 100


def test_traffic_mixes_referrers_campaigns_devices_and_custom_events() -> None:
    events = drawn(3000)
    bodies = [body for _, body in events]
    assert any("utm_campaign=autumn-launch" in b["url"] for b in bodies)
    assert any((b.get("referrer") or "").startswith("https://www.google.com/") for b in bodies)
    assert {b["w"] for b in bodies} >= {390, 1920}
    custom = [b for b in bodies if b["name"] not in {"pageview"}]
    assert {b["name"] for b in custom} >= {"Signup", "Download"}
    assert all(b["props"] for b in custom)
    assert len({visit.ip for visit, _ in events if iptocc.country_code(visit.ip) == "DE"}) > 5


def test_a_later_page_of_a_visit_names_the_previous_one_as_referrer() -> None:
    pages: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for visit, body in drawn(1500):
        pages[id(visit)].append(body)
    views = [[b for b in bodies if b["name"] == "pageview"] for bodies in pages.values()]
    pairs = [
        (earlier["url"].split("?")[0], later["referrer"]) for v in views for earlier, later in itertools.pairwise(v)
    ]
    assert len(pairs) > 100
    assert all(earlier == referrer for earlier, referrer in pairs)


def test_it_rejects_a_nonsensical_rate() -> None:
    with pytest.raises(CommandError, match="--rate"):
        call_command("simulate_traffic", "--site", "x.example", "--rate", "0", "--duration", "1")


@pytest.fixture
def app_with_worker(
    cast: Cast, clean_events: None, celery_worker_factory: Callable[..., Any], tmp_path: Path
) -> Iterator[Server]:
    celery_worker_factory()
    server = start_server(tmp_path)
    yield server
    stop_server(server)


def stored_events() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM analytics_event WHERE site_id = (SELECT id FROM accounts_site WHERE domain = 'dash.example')"
        )
        return int(cursor.fetchone()[0])


@pytest.mark.slow
def test_every_simulated_event_is_accepted_and_stored(app_with_worker: Server) -> None:
    out = io.StringIO()
    call_command(
        "simulate_traffic", "--site", "dash.example", "--rate", "40", "--duration", "2",
        "--url", app_with_worker.url, "--seed", "11", stdout=out,
    )  # fmt: skip
    summary = out.getvalue().strip().splitlines()[-1]
    assert summary.startswith("done: 80 sent, 80 accepted (202)")
    wait_for(lambda: stored_events() == 80, timeout=20)
