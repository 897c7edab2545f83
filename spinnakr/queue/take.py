"""The worker's bulk take on a Redis broker: many messages per round trip, kombu's bookkeeping kept.

kombu's basic_get costs three round trips a message (RPOP, then the unacknowledged hash and
index, then their removal on ack) and is not atomic (a process lost between the RPOP and the
bookkeeping loses the message). ``RedisTake`` takes up to a given number of messages per call
of one script that pops them and enters them in kombu's unacknowledged hash and index at once,
in the format kombu's own restore reads, with this process as their owner
(``spinnakr.queue.leases``), and acknowledges a group with one pipeline. An acknowledgement or
a hand-back that fails for want of the broker is left to the process's lease, which retries it
until the broker answers; so is a take whose answer was lost with the connection, through the
record of its tags the script keeps for a lease's time.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from kombu.serialization import prepare_accept_content

from spinnakr.queue import leases

TAKE_SCRIPT = """
-- KEYS[1] the queue's list   KEYS[2] kombu's unacked hash   KEYS[3] kombu's unacked index
-- KEYS[4] the owner hash   KEYS[5] this process's lease (spinnakr.queue.leases)
-- ARGV[1] most messages   ARGV[2] now (epoch seconds)   ARGV[3] the task's name
-- ARGV[4] this process's owner name   ARGV[5] the lease's seconds
-- KEYS[6] this take's record: its tags, for as long as a lease, in case the answer is lost
redis.call('SET', KEYS[5], ARGV[4], 'EX', ARGV[5])
local taken = {}
local tags = {}
for n = 1, tonumber(ARGV[1]) do
  local raw = redis.call('RPOP', KEYS[1])
  if not raw then break end
  local ok, message = pcall(cjson.decode, raw)
  local headers = ok and type(message) == 'table' and message.headers
  local props = ok and type(message) == 'table' and message.properties
  if type(headers) ~= 'table' or headers.task ~= ARGV[3] or type(headers.eta) == 'string'
      or type(props) ~= 'table' or type(props.delivery_tag) ~= 'string' or type(props.delivery_info) ~= 'table' then
    -- Not an ingest batch, or one with an ETA: back where it was, next in line for Celery's own
    -- consumer (which holds a message until its ETA).
    redis.call('RPUSH', KEYS[1], raw)
    break
  end
  local info = props.delivery_info
  redis.call('ZADD', KEYS[3], ARGV[2], props.delivery_tag)
  redis.call('HSET', KEYS[2], props.delivery_tag,
    '[' .. raw .. ',' .. cjson.encode(info.exchange or '') .. ',' .. cjson.encode(info.routing_key or '') .. ']')
  redis.call('HSET', KEYS[4], props.delivery_tag, ARGV[4])
  taken[#taken + 1] = raw
  tags[#tags + 1] = props.delivery_tag
end
if #tags > 0 then redis.call('SET', KEYS[6], cjson.encode(tags), 'EX', ARGV[5]) end
return taken
"""


class RedisTake:
    """Bulk take and acknowledgement on a Redis broker, keeping kombu's bookkeeping."""

    def __init__(self, channel: Any, queue: str, task: str) -> None:
        self.channel = channel
        self.queue = queue
        self.task = task  # only this task's messages are taken; another stops the take
        with channel.conn_or_acquire() as client:
            self.client = client
        self.script = self.client.register_script(TAKE_SCRIPT)
        self.lease = leases.lease(channel)  # a RedisTake lives in one process (its owner forks none)

    def take(self, count: int) -> list[Any]:
        """Up to ``count`` waiting ingest messages as kombu messages, each unacknowledged."""
        record = f"{leases.TAKE_RECORD_PREFIX}{uuid.uuid4().hex}"
        try:
            raws = self.script(
                keys=[
                    self.queue,
                    self.channel.unacked_key,
                    self.channel.unacked_index_key,
                    leases.OWNER_KEY,
                    self.lease.key,
                    record,
                ],
                args=[count, time.time(), self.task, self.lease.owner, self.lease.seconds],
            )
        except self.channel.connection_errors as exc:
            # The script may have run and its answer been lost with the connection: what it
            # took would stay with this live owner until the visibility timeout.
            self.lease.settle_later([record], "recover", exc)
            raise
        accept = prepare_accept_content(settings.CELERY_ACCEPT_CONTENT)
        messages = []
        for raw in raws:
            message = self.channel.message_to_python(json.loads(raw))
            message.accept = accept
            messages.append(message)
        return messages

    def ack(self, tags: Sequence[str]) -> None:
        if not tags:
            return
        pipe = self.client.pipeline()
        pipe.zrem(self.channel.unacked_index_key, *tags)
        pipe.hdel(self.channel.unacked_key, *tags)
        pipe.hdel(leases.OWNER_KEY, *tags)
        try:
            pipe.execute()
        except self.channel.connection_errors as exc:
            self.lease.settle_later(tags, "ack", exc)

    def requeue(self, tag: str) -> None:
        try:
            self.channel.qos.restore_by_tag(tag, leftmost=True)
        except self.channel.connection_errors as exc:
            self.lease.settle_later([tag], "release", exc)
