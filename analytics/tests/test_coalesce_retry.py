"""A batch that failed for a transient cause waits out its countdown, which stays short."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from kombu import Queue

from analytics.ingest.coalesce import RETRY_BACKOFF_MAX, _defer, _Drainer, _Taken
from analytics.payloads import INGEST_TASK
from analytics.tasks import ingest_batch
from spinnakr.queue.take import RedisTake
from spinnakr.queue.wire import RedisListSender
from spinnakr.tests.messages import send_numbered


def next_in_line(name: str, channel: Any) -> Any:
    return Queue(name, routing_key=name)(channel).get(no_ack=True, accept=settings.CELERY_ACCEPT_CONTENT)


@pytest.mark.skipif(settings.BROKER_IS_AMQP, reason="the bulk take is for Redis brokers only")
def test_the_bulk_take_leaves_a_batch_with_an_eta_to_celerys_consumer(broker_queue: tuple[Any, str]) -> None:
    channel, name = broker_queue
    deferred = send_numbered(name, 0, countdown=60)
    send_numbered(name, 1)
    take = RedisTake(channel, name, INGEST_TASK)

    assert take.take(10) == []

    following = next_in_line(name, channel)
    assert following is not None and following.headers["id"] == deferred


def test_the_drainers_basic_get_leaves_a_batch_with_an_eta_to_celerys_consumer(
    broker_queue: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    channel, name = broker_queue
    monkeypatch.setattr(settings, "EVENTS_QUEUE", name)
    # RabbitMQ's path (basic_get) on either broker.
    monkeypatch.setattr(RedisListSender, "applies", staticmethod(lambda connection: False))
    deferred = send_numbered(name, 0, countdown=60)
    send_numbered(name, 1)
    drainer = _Drainer()
    try:
        taken = drainer.take(max_events=100, max_messages=10)
    finally:
        drainer.close()

    assert taken == []
    returned = [next_in_line(name, channel) for _ in range(2)]
    assert {message.headers["id"] for message in returned if message is not None} >= {deferred}


def test_a_deferred_batch_waits_at_most_the_capped_backoff(
    broker_queue: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    channel, name = broker_queue
    monkeypatch.setattr(settings, "EVENTS_QUEUE", name)
    send_numbered(name, 0)
    message = Queue(name, routing_key=name)(channel).get(no_ack=False, accept=settings.CELERY_ACCEPT_CONTENT)
    assert message is not None

    _defer(_Taken(message, "b0", [], retries=9), ConnectionError("PostgreSQL is away"))

    deferred_by = datetime.now(UTC)
    again = next_in_line(name, channel)
    assert again is not None and again.headers["retries"] == 10
    # A few seconds, however many times it was deferred: the batch is durable in the queue.
    assert (
        datetime.fromisoformat(again.headers["eta"]) - deferred_by
        <= timedelta(seconds=RETRY_BACKOFF_MAX)
        <= timedelta(seconds=10)
    )


def test_the_task_retries_with_the_capped_backoff_for_as_long_as_it_takes() -> None:
    task: Any = ingest_batch
    assert (task.retry_backoff_max, task.max_retries) == (RETRY_BACKOFF_MAX, None)
    assert RETRY_BACKOFF_MAX <= 10
