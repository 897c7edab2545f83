"""The Redis broker's owner leases: a lost consumer's messages go back to their queue at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from django.conf import settings
from kombu import Queue

from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK
from analytics.tests.outage_servers import ThrowawayValkey, throwaway_valkey
from spinnakr.celery import app
from spinnakr.queue import leases
from spinnakr.queue.take import RedisTake
from spinnakr.tests.messages import send_numbered
from spinnakr.tests.waiting import wait_for

pytestmark = pytest.mark.skipif(settings.BROKER_IS_AMQP, reason="owner leases are for Redis brokers only")


def owners(channel: Any) -> dict[str, str]:
    with channel.conn_or_acquire() as client:
        return {tag.decode(): owner.decode() for tag, owner in client.hgetall(leases.OWNER_KEY).items()}


def waiting(channel: Any, name: str) -> int:
    with channel.conn_or_acquire() as client:
        return int(client.llen(name))


def test_the_redis_names_load_the_leasing_transport(broker_queue: tuple[Any, str]) -> None:
    channel, _name = broker_queue

    assert isinstance(channel.connection, leases.Transport)
    assert isinstance(channel.qos, leases.QoS)


def test_a_taken_message_names_its_live_owner_until_it_is_acknowledged(broker_queue: tuple[Any, str]) -> None:
    channel, name = broker_queue
    send_numbered(name, 0)
    bound = Queue(name, routing_key=name)(channel)

    message = bound.get(no_ack=False, accept=settings.CELERY_ACCEPT_CONTENT)

    assert message is not None and message.delivery_tag is not None
    held = leases.lease(channel)
    assert owners(channel)[message.delivery_tag] == held.owner
    with channel.conn_or_acquire() as client:
        assert 0 < client.ttl(held.key) <= settings.BROKER_LEASE_SECONDS
    assert message.delivery_tag not in channel.qos.restore_orphans()  # its owner lives
    assert waiting(channel, name) == 0

    message.ack()

    assert message.delivery_tag not in owners(channel)


def test_the_bulk_take_names_its_owner_and_its_ack_forgets_it(broker_queue: tuple[Any, str]) -> None:
    channel, name = broker_queue
    for n in range(3):
        send_numbered(name, n)
    take = RedisTake(channel, name, INGEST_TASK)

    messages = take.take(10)

    tags = [m.delivery_tag for m in messages]
    assert len(tags) == 3
    assert {owners(channel)[tag] for tag in tags} == {leases.lease(channel).owner}
    take.ack(tags)
    assert not set(tags) & set(owners(channel))


# What a consumer runs to take every message of the queue ``name``.
KOMBU_GET = """
bound = Queue(name, routing_key=name)(channel)
taken = 0
while bound.get(no_ack=False, accept=settings.CELERY_ACCEPT_CONTENT) is not None:
    taken += 1
"""
BULK_TAKE = "taken = len(RedisTake(channel, name, INGEST_TASK).take(100))"


def _take_and_hang(name: str, take: str) -> subprocess.Popen[bytes]:
    """A process that takes every message of ``name`` with ``take``, says how many, and hangs."""
    code = "\n".join(
        [
            "import time, django",
            "django.setup()",
            "from django.conf import settings",
            "from kombu import Queue",
            "from analytics.payloads import INGEST_TASK",
            "from spinnakr.queue.take import RedisTake",
            "from spinnakr.celery import app",
            "channel = app.connection_for_read().default_channel",
            f"name = {name!r}",
            textwrap.dedent(take),
            "print('taken', taken, flush=True)",
            "time.sleep(600)",
        ]
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "spinnakr.settings",
        "SPINNAKR_TESTING": "1",
        "BROKER_LEASE_SECONDS": "3",
    }
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, start_new_session=True
    )


@pytest.mark.parametrize("take", [KOMBU_GET, BULK_TAKE], ids=["kombu-get", "bulk-take"])
def test_the_messages_of_a_killed_consumer_go_back_once_its_lease_expires(
    broker_queue: tuple[Any, str], take: str
) -> None:
    channel, name = broker_queue
    ids = [send_numbered(name, n) for n in range(3)]
    consumer = _take_and_hang(name, take)
    try:
        assert consumer.stdout is not None
        assert consumer.stdout.readline().split() == [b"taken", b"3"]
        assert waiting(channel, name) == 0
        time.sleep(4)  # under test: real time past its 3-s lease (a Redis expiry), which its thread renews
        assert channel.qos.restore_orphans() == []  # the consumer lives: its messages stay taken
    finally:
        os.killpg(consumer.pid, signal.SIGKILL)
        consumer.wait(timeout=10)

    restored = cast(list[str], wait_for(channel.qos.restore_orphans, timeout=15))

    assert len(restored) == 3
    assert waiting(channel, name) == 3
    assert not set(restored) & set(owners(channel))
    bound = Queue(name, routing_key=name)(channel)
    again = [bound.get(no_ack=True, accept=settings.CELERY_ACCEPT_CONTENT) for _ in ids]
    assert sorted(m.headers["id"] for m in again) == sorted(ids)  # type: ignore[union-attr]
    assert all(m.headers["redelivered"] for m in again)  # type: ignore[union-attr]


# A broker of the test's own, which it stops and starts: the session's stays up.


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[ThrowawayValkey]:
    yield from throwaway_valkey(tmp_path)


@pytest.fixture
def own_channel(own_broker: ThrowawayValkey) -> Iterator[tuple[Any, Any, str]]:
    """A connection to the test's own broker, its channel and a queue holding two batches."""
    connection = app.connection_for_read(own_broker.url)
    channel = connection.default_channel
    name = f"{settings.EVENTS_QUEUE}.own"
    Queue(name, routing_key=name)(channel).declare()
    for n in range(2):
        with app.connection_for_write(own_broker.url) as writer:
            app.send_task(
                INGEST_TASK,
                kwargs={"batch_id": f"b{n}", "events": [{"n": n}]},
                queue=name,
                serializer=EVENTS_SERIALIZER,
                producer=app.amqp.Producer(writer),
            )
    yield connection, channel, name
    leases.lease(channel).stop()  # its thread would renew it on a server that is gone


def test_a_message_of_a_connection_celery_dropped_in_an_outage_is_acknowledged_once_the_broker_is_back(
    own_broker: ThrowawayValkey, own_channel: tuple[Any, Any, str]
) -> None:
    connection, channel, name = own_channel
    message = Queue(name, routing_key=name)(channel).get(no_ack=False, accept=settings.CELERY_ACCEPT_CONTENT)
    assert message is not None
    own_broker.stop()
    # What Celery does with a connection it lost: its channel's restore fails, its client goes.
    connection.collect()
    own_broker.start()
    # What kombu does to the channel in a forked pool process: its pool is rebuilt on next use.
    channel._after_fork()

    message.ack()  # kombu rebuilt the pool from the dropped client: 'NoneType' … 'hostname'

    client = own_broker.client()
    assert not client.hexists("unacked", str(message.delivery_tag))
    assert not client.hexists(leases.OWNER_KEY, str(message.delivery_tag))


def test_an_acknowledgement_or_hand_back_that_fails_for_want_of_the_broker_is_done_once_it_is_back(
    own_broker: ThrowawayValkey, own_channel: tuple[Any, Any, str]
) -> None:
    _connection, channel, name = own_channel
    take = RedisTake(channel, name, INGEST_TASK)
    applied, returned = take.take(10)
    own_broker.stop()

    take.ack([applied.delivery_tag])
    take.requeue(returned.delivery_tag)

    assert set(take.lease.pending()) == {applied.delivery_tag, returned.delivery_tag}
    own_broker.start()
    wait_for(lambda: not take.lease.pending(), timeout=15)
    assert channel.qos.restore_orphans() == [returned.delivery_tag]  # the next sweep puts it back
    client = own_broker.client()
    assert client.hlen("unacked") == 0
    assert client.hlen(leases.OWNER_KEY) == 0
    again = Queue(name, routing_key=name)(channel).get(no_ack=True, accept=settings.CELERY_ACCEPT_CONTENT)
    assert again is not None and again.decode()[1]["batch_id"] == "b1"


def test_a_channel_closed_in_an_outage_hands_its_messages_back_once_the_broker_is_back(
    own_broker: ThrowawayValkey, own_channel: tuple[Any, Any, str]
) -> None:
    connection, channel, name = own_channel
    message = Queue(name, routing_key=name)(channel).get(no_ack=False, accept=settings.CELERY_ACCEPT_CONTENT)
    assert message is not None
    held = leases.lease(channel)
    own_broker.stop()

    connection.collect()  # the channel's restore of what it holds fails

    assert held.pending() == {message.delivery_tag: "release"}
    own_broker.start()
    wait_for(lambda: not held.pending(), timeout=15)
    fresh: Any = app.connection_for_read(own_broker.url).default_channel
    assert fresh.qos.restore_orphans() == [message.delivery_tag]
    assert own_broker.client().llen(name) == 2


def test_a_message_taken_when_the_broker_went_away_before_its_bookkeeping_goes_back_once_it_is_back(
    own_broker: ThrowawayValkey, own_channel: tuple[Any, Any, str]
) -> None:
    _connection, channel, name = own_channel
    # What kombu's consumer holds between its pop and its bookkeeping: a message off the queue.
    message = Queue(name, routing_key=name)(channel).get(no_ack=True, accept=settings.CELERY_ACCEPT_CONTENT)
    assert message is not None
    own_broker.stop()

    with pytest.raises(channel.connection_errors):
        channel.qos.append(message, message.delivery_tag)

    held = leases.lease(channel)
    assert held.pending() == {message.delivery_tag: "restore"}
    own_broker.start()
    wait_for(lambda: not held.pending(), timeout=15)
    fresh: Any = app.connection_for_read(own_broker.url).default_channel
    assert fresh.qos.restore_orphans() == [message.delivery_tag]
    assert own_broker.client().llen(name) == 2


def test_the_messages_of_a_bulk_take_whose_answer_was_lost_go_back_once_the_broker_answers(
    own_broker: ThrowawayValkey, own_channel: tuple[Any, Any, str]
) -> None:
    _connection, channel, name = own_channel
    with app.connection_for_write(own_broker.url) as writer:
        app.send_task(
            INGEST_TASK,
            kwargs={"batch_id": "big", "events": [{"n": "x" * 40_000}]},
            queue=name,
            serializer=EVENTS_SERIALIZER,
            producer=app.amqp.Producer(writer),
        )
    take = RedisTake(channel, name, INGEST_TASK)
    # An answer past 16 kB goes beyond the server's output buffer limit: the script runs, and the
    # server drops the connection instead of answering, as a broker that goes away does.
    own_broker.client().config_set("client-output-buffer-limit", "normal 1000 1000 0")

    with pytest.raises(channel.connection_errors):
        take.take(10)

    own_broker.client().config_set("client-output-buffer-limit", "normal 0 0 0")
    assert list(take.lease.pending().values()) == ["recover"]
    assert own_broker.client().llen(name) == 0
    wait_for(lambda: not take.lease.pending(), timeout=20)  # the lease's thread wakes within a third of it
    fresh: Any = app.connection_for_read(own_broker.url).default_channel
    assert len(fresh.qos.restore_orphans()) == 3
    assert own_broker.client().llen(name) == 3
