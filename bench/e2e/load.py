"""Open-loop load generator for bench/e2e: ``POST /api/event`` (or ``--batch N`` events a
request to ``POST /api/events``, with the API key in ``BENCH_KEY``) at a constant rate.

Runs in its own process (``python -m bench.e2e.load``, started by ``bench.e2e.run``) so the
sampling of PostgreSQL and Redis does not disturb its timing. Request ``i`` is due at
``start + i / rate`` whatever happened to the earlier ones (open loop: a slow server does not
slow the generator down); it goes out on an idle keep-alive HTTP/1.1 connection, a new one
when all are busy (up to ``--max-connections``). Every event has its own pathname
``/e2e/<i>`` and one of 50,000 client addresses (``X-Forwarded-For``, or the event's ``ip`` in a
batch), so visitors differ and every event can be found again in PostgreSQL.

Results go to ``--out`` as a JSON object (arrays as base64 of machine-order ``array`` bytes): per request the status (-1 not answered within
``--timeout``, -2 connection error), the moment of the answer (``time.monotonic()``, comparable across
processes on Linux) and the moment it was due; plus how late the generator sent (a generator
that cannot keep up shows here, not as server latency).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import time
from array import array
from collections import deque
from pathlib import Path

AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
REFERRERS = ["https://www.google.com/", "https://t.co/x", "", "https://news.ycombinator.com/item?id=1"]
ADDRESSES = 50_000
TIMED_OUT = -1  # status of a request not answered within --timeout
CONNECTION_ERROR = -2  # status of a request whose connection failed
IDLE_SECONDS = 3.0  # a keep-alive connection idle this long is closed, not reused


class _Client(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.index = -1  # the request in flight, -1 when idle
        self.deadline = 0.0
        self.last_used = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, index: int, payload: bytes, timeout: float) -> None:
        self.index = index
        self.deadline = time.monotonic() + timeout
        assert self.transport is not None
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        length, close, chunked = 0, False, False
        try:
            status = int(lines[0].split(b" ", 2)[1])
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding" and value.strip().lower() == b"chunked":
                    chunked = True
        except (IndexError, ValueError):
            self.fail(CONNECTION_ERROR)
            return
        if chunked:  # short bodies only (the baseline app's "{}"): up to the last, empty chunk
            last = self.buffer.find(b"0\r\n\r\n", end + 4)
            if last < 0:
                return
            consumed = last + 5
        else:
            consumed = end + 4 + length
            if len(self.buffer) < consumed:
                return
        del self.buffer[:consumed]
        if self.index < 0 or self.buffer:  # an answer nobody asked for: the connection is out of step
            self.fail(CONNECTION_ERROR)
            return
        index, self.index = self.index, -1
        self.generator.record(index, status)
        if close:
            self.close()
        else:
            self.generator.release(self)

    def fail(self, status: int) -> None:
        index, self.index = self.index, -1
        if index >= 0:
            self.generator.record(index, status)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            self.generator.closed(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(CONNECTION_ERROR)


class Generator:
    """Requests due at fixed moments, each on an idle connection or a new one (up to the cap);
    when every connection is busy, due requests wait in order for the next one free.

    Built on asyncio protocols rather than streams: one callback per answer and one timer for
    all timeouts, so the generator costs less CPU than the server it loads (on 2 cores, a
    stream-based generator with a timeout task per request took ~0.45 core at 2,000/s)."""

    def __init__(
        self, host: str, port: int, domain: str, total: int, max_connections: int, timeout: float, batch: int = 1
    ) -> None:
        self.host, self.port, self.domain = host, port, domain
        self.batch = batch
        self.timeout = timeout
        self.max_connections = max_connections
        self.open = 0  # connections open or opening
        self.peak = 0
        self.idle: list[_Client] = []
        self.busy: set[_Client] = set()
        self.waiting: deque[int] = deque()  # due requests without a connection yet
        self.outstanding = 0  # requests due and not yet answered
        self.status = array("h", bytes(2 * total))
        self.answered = array("d", bytes(8 * total))
        self.due = array("d", bytes(8 * total))
        self.sent_late = array("d", bytes(8 * total))
        rng = random.Random(4)
        self.addresses = [
            f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}".encode()
            for _ in range(ADDRESSES)
        ]
        self.head = b"POST /api/event HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: text/plain\r\nUser-Agent: %s\r\n" % (
            host.encode(),
            port,
            AGENT.encode(),
        )
        key = os.environ.get("BENCH_KEY", "")
        self.batch_head = (
            b"POST /api/events HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            % (
                host.encode(),
                port,
            )
            + b"Authorization: Bearer %s\r\n" % key.encode()
        )
        self.done: asyncio.Future[None] | None = None

    def request(self, index: int) -> bytes:
        return self.single(index) if self.batch == 1 else self.batch_of(index)

    def batch_of(self, index: int) -> bytes:
        """Request ``index``'s events ``index * batch`` to ``(index + 1) * batch - 1``."""
        events = ",".join(
            f'{{"name":"pageview","url":"https://{self.domain}/e2e/{n}","domain":"{self.domain}",'
            f'"referrer":"{REFERRERS[n % len(REFERRERS)]}","screen_width":{320 + n % 2240},'
            f'"ip":"{self.addresses[n % ADDRESSES].decode()}","user_agent":"{AGENT}"}}'
            for n in range(index * self.batch, (index + 1) * self.batch)
        )
        body = f'{{"events":[{events}]}}'.encode()
        return self.batch_head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)

    def single(self, index: int) -> bytes:
        referrer = REFERRERS[index % len(REFERRERS)]
        body = (
            f'{{"n":"pageview","u":"https://{self.domain}/e2e/{index}","d":"{self.domain}",'
            f'"r":"{referrer}","w":{320 + index % 2240}}}'
        ).encode()
        return self.head + b"X-Forwarded-For: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            self.addresses[index % ADDRESSES],
            len(body),
            body,
        )

    # bookkeeping ------------------------------------------------------------------

    def record(self, index: int, status: int) -> None:
        self.status[index] = status
        self.answered[index] = time.monotonic()
        self.outstanding -= 1
        if self.outstanding == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def release(self, client: _Client) -> None:
        self.busy.discard(client)
        client.last_used = time.monotonic()
        if self.waiting:
            self.dispatch(client, self.waiting.popleft())
        else:
            self.idle.append(client)

    def closed(self, client: _Client) -> None:
        self.busy.discard(client)
        if client in self.idle:
            self.idle.remove(client)
        self.open -= 1
        if self.waiting:  # a closed connection makes room for a new one
            self.connect()

    # sending ----------------------------------------------------------------------

    def dispatch(self, client: _Client, index: int) -> None:
        self.busy.add(client)
        self.sent_late[index] = time.monotonic() - self.due[index]
        client.send(index, self.request(index), self.timeout)

    def submit(self, index: int) -> None:
        self.outstanding += 1
        now = time.monotonic()
        while self.idle:
            client = self.idle.pop()
            if now - client.last_used < IDLE_SECONDS:
                self.dispatch(client, index)
                return
            client.close()  # the server may be closing it (uvicorn's keep-alive timeout is 5 s)
        self.waiting.append(index)
        if self.open < self.max_connections:
            self.connect()

    def connect(self) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, client = await loop.create_connection(lambda: _Client(self), self.host, self.port)
        except OSError:
            self.open -= 1
            if self.waiting:  # the oldest waiting request fails with the connection
                self.record(self.waiting.popleft(), CONNECTION_ERROR)
            if self.waiting and self.open < self.max_connections:
                self.connect()
            return
        self.busy.add(client)
        self.release(client)

    def sweep(self) -> None:
        """Time out the requests in flight past their deadline (their connection is closed)."""
        now = time.monotonic()
        for client in [c for c in self.busy if c.index >= 0 and c.deadline <= now]:
            client.fail(TIMED_OUT)

    async def run(self, rate: float, total: int, start: float) -> None:
        self.done = asyncio.get_running_loop().create_future()
        index = 0
        next_sweep = start
        while index < total:
            now = time.monotonic()
            while index < total and start + index / rate <= now:
                self.due[index] = start + index / rate
                self.submit(index)
                index += 1
            if now >= next_sweep:
                self.sweep()
                next_sweep = now + 0.1
            if index < total:
                # At least a millisecond: the event loop's timers have that resolution, and a
                # shorter sleep returns at once, spinning (the requests due meanwhile go out
                # together, at most a millisecond late, which ``sent_late`` records).
                await asyncio.sleep(max(0.001, start + index / rate - time.monotonic()))
        while self.outstanding:
            self.sweep()
            try:
                await asyncio.wait_for(asyncio.shield(self.done), 0.1)
            except TimeoutError:
                continue
        for client in list(self.idle):
            client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--rate", type=float, required=True, help="events a second")
    parser.add_argument("--batch", type=int, default=1, help="events a request: above 1, to /api/events")
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()
    import uvloop

    rate = options.rate / options.batch  # requests a second
    total = int(rate * options.duration)
    generator = Generator(
        options.host, options.port, options.domain, total, options.max_connections, options.timeout, options.batch
    )
    start = time.monotonic() + 0.1
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(generator.run(rate, total, start))
    result = {
        "rate": rate,
        "total": total,
        "start": start,
        "end": time.monotonic(),
        "connections": generator.peak,
        "status": base64.b64encode(generator.status.tobytes()).decode(),
        "answered": base64.b64encode(generator.answered.tobytes()).decode(),
        "due": base64.b64encode(generator.due.tobytes()).decode(),
        "sent_late": base64.b64encode(generator.sent_late.tobytes()).decode(),
    }
    options.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
