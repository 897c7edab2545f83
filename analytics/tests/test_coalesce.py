"""The worker's bulk take on a Redis broker keeps kombu's unacknowledged bookkeeping."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.conf import settings
from kombu import Queue

from analytics.ingest.coalesce import _ack_all, _Drainer
from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK
from spinnakr.celery import app
from spinnakr.queue.take import RedisTake

pytestmark = pytest.mark.skipif(settings.BROKER_IS_AMQP, reason="the bulk take is for Redis brokers only")


def send(queue: str, task: str = INGEST_TASK, **kwargs: Any) -> str:
    task_id = uuid.uuid4().hex
    app.send_task(task, kwargs=kwargs, task_id=task_id, queue=queue, serializer=EVENTS_SERIALIZER)
    return task_id


def batch(queue: str, n: int) -> str:
    return send(queue, batch_id=f"b{n}", events=[{"n": n}])


def unacked(channel: Any) -> dict[str, Any]:
    with channel.conn_or_acquire() as client:
        return {tag.decode(): json.loads(raw) for tag, raw in client.hgetall(channel.unacked_key).items()}


def indexed(channel: Any) -> set[str]:
    with channel.conn_or_acquire() as client:
        return {tag.decode() for tag in client.zrange(channel.unacked_index_key, 0, -1)}


def test_it_takes_waiting_batches_in_order_and_enters_each_as_unacknowledged(broker_queue: tuple[Any, str]) -> None:
    channel, name = broker_queue
    ids = [batch(name, n) for n in range(3)]
    take = RedisTake(channel, name, INGEST_TASK)

    messages = take.take(10)

    assert [m.headers["id"] for m in messages] == ids
    assert [m.decode()[1]["batch_id"] for m in messages] == ["b0", "b1", "b2"]
    tags = [m.delivery_tag for m in messages]
    entries = unacked(channel)
    mine = {tag: entries[tag] for tag in tags}
    assert set(tags) <= indexed(channel)
    for tag, (message, exchange, routing_key) in mine.items():
        assert (message["properties"]["delivery_tag"], exchange, routing_key) == (tag, "", name)

    take.ack(tags)

    assert not set(tags) & set(unacked(channel)) and not set(tags) & indexed(channel)


def test_it_stops_at_a_message_of_another_task_and_leaves_it_first_in_line(broker_queue: tuple[Any, str]) -> None:
    channel, name = broker_queue
    first = batch(name, 0)
    other = send(name, task="analytics.refresh_quota_flags")
    batch(name, 1)
    take = RedisTake(channel, name, INGEST_TASK)

    messages = take.take(10)

    assert [m.headers["id"] for m in messages] == [first]
    bound = Queue(name, routing_key=name)(channel)
    following = bound.get(no_ack=True, accept=settings.CELERY_ACCEPT_CONTENT)
    assert following is not None and following.headers["id"] == other
    take.ack([messages[0].delivery_tag])


def test_a_taken_batch_handed_back_or_restored_by_kombu_is_delivered_again(broker_queue: tuple[Any, str]) -> None:
    channel, name = broker_queue
    ids = [batch(name, n) for n in range(2)]
    take = RedisTake(channel, name, INGEST_TASK)
    first, second = take.take(10)

    take.requeue(first.delivery_tag)  # the worker hands it back
    channel.qos.restore_by_tag(second.delivery_tag)  # what kombu does after the visibility timeout
    assert not {first.delivery_tag, second.delivery_tag} & indexed(channel)

    again = take.take(10)
    assert sorted(m.headers["id"] for m in again) == sorted(ids)
    assert all(m.headers["redelivered"] for m in again)
    take.ack([m.delivery_tag for m in again])


def test_a_message_that_is_not_json_is_left_in_the_queue(broker_queue: tuple[Any, str]) -> None:
    channel, name = broker_queue
    with channel.conn_or_acquire() as client:
        client.lpush(name, b"not json")
    take = RedisTake(channel, name, INGEST_TASK)

    assert take.take(10) == []
    with channel.conn_or_acquire() as client:
        assert client.lrange(name, 0, -1) == [b"not json"]
        client.delete(name)


def test_the_worker_takes_about_as_many_events_as_it_may(
    broker_queue: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    channel, name = broker_queue
    monkeypatch.setattr(settings, "EVENTS_QUEUE", name)
    for n in range(40):
        send(name, batch_id=f"b{n}", events=[{"n": n}] * 10)
    drainer = _Drainer()
    try:
        taken = drainer.take(max_events=95, max_messages=200)
        assert [item.batch_id for item in taken] == [f"b{n}" for n in range(10)]
        _ack_all(taken)

        rest = drainer.take(max_events=10_000, max_messages=200)
        assert [item.batch_id for item in rest] == [f"b{n}" for n in range(10, 40)]
        _ack_all(rest)
        assert not {item.message.delivery_tag for item in taken + rest} & indexed(channel)
    finally:
        drainer.close()
