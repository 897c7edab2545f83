"""Group commit without a timer: a publish starts at once, and what arrives while one is in flight
goes out together when it returns; a request whose events cannot be encoded fails alone."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from kombu import Connection

from analytics.collector.publish import Publisher, UnpublishableEvents
from analytics.tests.collector_fixtures import consume, events_of, events_queue, purge_events_queue
from analytics.tests.test_publish import sample_event, throwaway_valkey
from spinnakr.tests.waiting import wait_for_async


def random_site_id() -> int:
    return 900_000 + uuid.uuid4().int % 100_000


async def within_turns(condition: Callable[[], bool], turns: int = 10) -> bool:
    """Whether ``condition`` holds within a few turns of the event loop: far too soon for any timer."""
    for _ in range(turns):
        if condition():
            return True
        await asyncio.sleep(0)
    return condition()


def queued_event_counts(socket_path: str) -> list[int]:
    """The events of each message on a broker's events queue, oldest first (taken off it)."""
    counts = []
    with Connection(f"redis+socket://{socket_path}") as connection:
        queue = events_queue()(connection.default_channel)
        while (message := queue.get(no_ack=True, accept=settings.CELERY_ACCEPT_CONTENT)) is not None:
            counts.append(len(message.decode()[1]["events"]))
    return counts


def test_a_lone_request_is_published_at_once() -> None:
    purge_events_queue()
    site_id = random_site_id()
    publisher = Publisher()

    async def scenario() -> tuple[bool, int]:
        await publisher.start()
        try:
            submitted = asyncio.ensure_future(publisher.submit([sample_event(site_id)]))
            taken = await within_turns(lambda: publisher.publishing and publisher.pending_requests == 0)
            await asyncio.wait_for(submitted, 10)
            return taken, publisher.messages
        finally:
            await publisher.stop()

    assert asyncio.run(scenario()) == (True, 1)
    messages = consume(lambda got: events_of(got, site_id))
    assert [len(events_of([message], site_id)) for message in messages] == [1]


def test_requests_arriving_while_a_publish_is_in_flight_go_out_together_when_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spinnakr.celery import app

    socket_path = str(tmp_path / "broker.sock")
    monkeypatch.setattr(app.conf, "broker_write_url", f"redis+socket://{socket_path}")
    site_id = random_site_id()
    publisher = Publisher(max_events=3)
    server = throwaway_valkey(socket_path)

    def events(count: int) -> list[Any]:
        return [sample_event(site_id) for _ in range(count)]

    async def scenario() -> tuple[int, int]:
        await publisher.submit(events(1))  # connected, and the first message is out
        server.send_signal(signal.SIGSTOP)  # the next push waits for the broker's answer
        try:
            held = asyncio.ensure_future(publisher.submit(events(1)))
            await wait_for_async(
                lambda: publisher.publishing and publisher.pending_requests == 0, timeout=5, interval=0.005
            )
            later = [asyncio.ensure_future(publisher.submit(events(count))) for count in (2, 1, 2)]
            await wait_for_async(lambda: publisher.pending_requests == 3, timeout=5, interval=0.005)
            while_held = (publisher.messages, publisher.pending_requests)
        finally:
            server.send_signal(signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(held, *later), 10)
        await publisher.stop()
        return while_held

    try:
        assert asyncio.run(scenario()) == (1, 3)
        # The three that waited go out when the held push returns: whole requests, at most 3 events.
        assert queued_event_counts(socket_path) == [1, 1, 3, 2]
        assert publisher.messages == 4
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()


def test_a_request_whose_events_cannot_be_encoded_fails_alone_and_the_others_are_published() -> None:
    purge_events_queue()
    site_id = random_site_id()
    publisher = Publisher()
    lone_surrogate: Any = {**sample_event(site_id), "pathname": "/\ud800"}
    good = sample_event(site_id)

    async def scenario() -> tuple[list[object], int]:
        await publisher.start()
        try:
            # Submitted in the same turn of the loop: without their own encoding they share a message.
            outcomes = await asyncio.wait_for(
                asyncio.gather(publisher.submit([lone_surrogate]), publisher.submit([good]), return_exceptions=True), 10
            )
            return list(outcomes), publisher.messages
        finally:
            await publisher.stop()

    outcomes, confirmed = asyncio.run(scenario())

    assert [type(outcome) for outcome in outcomes] == [UnpublishableEvents, type(None)]
    assert confirmed == 1
    published = events_of(consume(lambda got: events_of(got, site_id)), site_id)
    assert [event["event_id"] for event in published] == [good["event_id"]]
