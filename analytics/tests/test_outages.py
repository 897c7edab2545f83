"""Outages of the broker and of PostgreSQL under a real worker: it lives on, and every accepted
event ends up counted (Redis rollups) and stored (PostgreSQL) once, within a minute of the
server's return.

Each test stops a throwaway server of its own (analytics.tests.outage_servers), never one the
test session depends on, and points a real Celery worker subprocess at it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings

from accounts.models import Site
from analytics.ingest import rollups
from analytics.ingest.pipeline import PAUSE_ENV
from analytics.models import Event
from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK, EnrichedEvent
from analytics.tests.conftest import WorkerProcess
from analytics.tests.factories import make_event, make_site
from analytics.tests.outage_servers import ThrowawayPostgres, ThrowawayValkey, throwaway_valkey
from spinnakr.celery import app
from spinnakr.tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_events"), pytest.mark.slow]

OUTAGE_SECONDS = 10
CATCH_UP_SECONDS = 60


def moment() -> datetime:
    """A minute of today (UTC) that all of a test's events share."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return max(now - timedelta(minutes=30), now.replace(hour=0, minute=0))


def a_batch(site: Site, n: int, size: int = 5) -> list[EnrichedEvent]:
    at = moment()
    return [make_event(site, at + timedelta(seconds=i), visitor=n, pathname=f"/{n}/{i}") for i in range(size)]


def send(broker_url: str, events: list[EnrichedEvent]) -> None:
    """Publish one batch as the collector does, without retrying: it raises if the broker is away."""
    batch_id = uuid.uuid4().hex
    with app.connection_for_write(broker_url) as connection:
        app.send_task(
            INGEST_TASK,
            kwargs={"batch_id": batch_id, "events": events},
            task_id=batch_id,
            queue=settings.EVENTS_QUEUE,
            serializer=EVENTS_SERIALIZER,
            producer=app.amqp.Producer(connection),
            retry=False,
        )


class Accepted:
    """The events each site had accepted: those of the batches whose publish returned."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.events: Counter[int] = Counter()
        self.batches = 0

    def send(self, site: Site, size: int = 5) -> None:
        events = a_batch(site, self.batches, size)
        send(self.broker_url, events)
        self.batches += 1
        self.events[site.id] += len(events)


def counted(site: Site) -> int:
    return rollups.counters(site.id, "d", [moment().strftime("%Y%m%d")])[0]["pageviews"]


def stored(site: Site) -> int:
    return Event.objects.filter(site_id=site.id).count()


def left_of_the_minute_after(returned: float) -> float:
    """Seconds left of the minute after the server's return, in which it must all be in."""
    return max(0.0, returned + CATCH_UP_SECONDS - time.monotonic())


def all_in(sites: list[Site], accepted: Counter[int]) -> bool:
    return all(counted(site) == stored(site) == accepted[site.id] for site in sites)


@pytest.fixture
def broker_server(tmp_path: Path) -> Iterator[ThrowawayValkey]:
    yield from throwaway_valkey(tmp_path)


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    server.start()
    yield server
    server.remove()


@pytest.mark.skipif(settings.BROKER_IS_AMQP, reason="broker outages are for a Redis broker (a throwaway Valkey) only")
def test_a_broker_outage_with_batches_in_flight_neither_stops_the_worker_nor_strands_an_event(
    celery_worker_factory: Callable[..., WorkerProcess], broker_server: ThrowawayValkey
) -> None:
    sites = [make_site("a.example"), make_site("b.example")]
    worker = celery_worker_factory(
        env={"CELERY_BROKER_URL": broker_server.url, "BROKER_LEASE_SECONDS": "3", PAUSE_ENV: "after_rollups:3"}
    )
    accepted = Accepted(broker_server.url)
    for n in range(20):
        accepted.send(sites[n % 2])
    wait_for(lambda: "ingest.test_pause" in worker.log.read_text(), timeout=30)  # batches in flight

    broker_server.stop()
    with pytest.raises(Exception):  # noqa: B017 - whatever the client raises: the batch is refused
        accepted.send(sites[0])
    time.sleep(OUTAGE_SECONDS)  # the outage itself
    broker_server.start()
    returned = time.monotonic()
    for n in range(10):
        accepted.send(sites[n % 2])

    wait_for(lambda: all_in(sites, accepted.events), timeout=left_of_the_minute_after(returned))
    assert worker.process.poll() is None, worker.log.read_text()[-5000:]
    assert sum(accepted.events.values()) == 150
    for site in sites:
        ids = Event.objects.filter(site_id=site.id).values_list("event_id", flat=True)
        assert len(set(ids)) == len(ids) == accepted.events[site.id]
    client = broker_server.client()
    wait_for(lambda: client.hlen("unacked") == 0, timeout=left_of_the_minute_after(returned))


MAKE_SITES = """
from django.core.management import call_command
from analytics.tests.factories import make_site
call_command("migrate", verbosity=0)
print(*(make_site(domain).id for domain in ("a.example", "b.example")))
"""


def test_a_postgresql_outage_neither_stops_the_worker_nor_loses_an_event_and_it_catches_up_within_a_minute(
    celery_worker_factory: Callable[..., WorkerProcess], own_postgres: ThrowawayPostgres
) -> None:
    # The sites live in the throwaway database, the worker's; the rollups in the session's Redis.
    sites = [
        Site(id=int(site_id), domain=f"{name}.example")
        for site_id, name in zip(own_postgres.django(MAKE_SITES).split(), "ab", strict=True)
    ]
    worker = celery_worker_factory(env={"DATABASE_URL": own_postgres.url, "SPINNAKR_TEST_DB_NAME": ""})
    accepted = Accepted(str(settings.CELERY_BROKER_URL))

    def stored_in(site: Site) -> int:
        rows = own_postgres.query(
            "SELECT count(*), count(DISTINCT event_id) FROM analytics_event WHERE site_id = %s", [site.id]
        )
        total, distinct = rows[0]
        assert total == distinct  # no duplicate
        return int(str(total))

    def caught_up() -> bool:
        return all(counted(site) == stored_in(site) == accepted.events[site.id] for site in sites)

    for n in range(10):
        accepted.send(sites[n % 2])
    wait_for(caught_up, timeout=60)

    own_postgres.stop()
    for n in range(10):
        accepted.send(sites[n % 2])
    time.sleep(OUTAGE_SECONDS)  # the outage itself
    own_postgres.start()
    returned = time.monotonic()
    for n in range(10):
        accepted.send(sites[n % 2])

    wait_for(caught_up, timeout=left_of_the_minute_after(returned))
    assert worker.process.poll() is None, worker.log.read_text()[-5000:]
    assert sum(accepted.events.values()) == 150
    # The waiting batches were handed back to the queue on each failure, not republished each
    # with a countdown of its own, and the delivered one was retried after its countdown: a
    # batch taken again at once was retried five times in under two seconds.
    retried = Counter(re.findall(r"ingest\.batch_deferred batch_id=(\w+)", worker.log.read_text()))
    assert retried == Counter(), retried
