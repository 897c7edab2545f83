"""The Redis broker's owner leases: a lost consumer's messages go back to their queue at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from typing import Any, cast

import pytest
from django.conf import settings
from kombu import Queue

from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK
from analytics.tasks import _RedisTake
from analytics.tests.conftest import wait_for
from spinnakr import broker
from spinnakr.celery import app

pytestmark = pytest.mark.skipif(settings.BROKER_IS_AMQP, reason="owner leases are for Redis brokers only")


def send(queue: str, n: int) -> str:
    task_id = uuid.uuid4().hex
    app.send_task(
        INGEST_TASK,
        kwargs={"batch_id": f"b{n}", "events": [{"n": n}]},
        task_id=task_id,
        queue=queue,
        serializer=EVENTS_SERIALIZER,
    )
    return task_id


def owners(channel: Any) -> dict[str, str]:
    with channel.conn_or_acquire() as client:
        return {tag.decode(): owner.decode() for tag, owner in client.hgetall(broker.OWNER_KEY).items()}


def waiting(channel: Any, name: str) -> int:
    with channel.conn_or_acquire() as client:
        return int(client.llen(name))


def test_the_redis_names_load_the_leasing_transport(broker_queue: tuple[Any, str]) -> None:
    channel, _name = broker_queue

    assert isinstance(channel.connection, broker.Transport)
    assert isinstance(channel.qos, broker.QoS)


def test_a_taken_message_names_its_live_owner_until_it_is_acknowledged(broker_queue: tuple[Any, str]) -> None:
    channel, name = broker_queue
    send(name, 0)
    bound = Queue(name, routing_key=name)(channel)

    message = bound.get(no_ack=False, accept=settings.CELERY_ACCEPT_CONTENT)

    assert message is not None and message.delivery_tag is not None
    held = broker.lease(channel)
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
        send(name, n)
    take = _RedisTake(channel, name)

    messages = take.take(10)

    tags = [m.delivery_tag for m in messages]
    assert len(tags) == 3
    assert {owners(channel)[tag] for tag in tags} == {broker.lease(channel).owner}
    take.ack(tags)
    assert not set(tags) & set(owners(channel))


# What a consumer runs to take every message of the queue ``name``.
KOMBU_GET = """
bound = Queue(name, routing_key=name)(channel)
taken = 0
while bound.get(no_ack=False, accept=settings.CELERY_ACCEPT_CONTENT) is not None:
    taken += 1
"""
BULK_TAKE = "taken = len(_RedisTake(channel, name).take(100))"


def _take_and_hang(name: str, take: str) -> subprocess.Popen[bytes]:
    """A process that takes every message of ``name`` with ``take``, says how many, and hangs."""
    code = "\n".join(
        [
            "import time, django",
            "django.setup()",
            "from django.conf import settings",
            "from kombu import Queue",
            "from analytics.tasks import _RedisTake",
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
    ids = [send(name, n) for n in range(3)]
    consumer = _take_and_hang(name, take)
    try:
        assert consumer.stdout is not None
        assert consumer.stdout.readline().split() == [b"taken", b"3"]
        assert waiting(channel, name) == 0
        time.sleep(4)  # longer than its 3-s lease, which its thread renews
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
