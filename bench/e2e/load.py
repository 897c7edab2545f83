"""Open-loop load generator for bench/e2e: ``POST /api/event`` at a constant rate.

Runs in its own process (``python -m bench.e2e.load``, started by ``bench.e2e.run``) so the
sampling of PostgreSQL and Redis does not disturb its timing. Request ``i`` is due at
``start + i / rate`` whatever happened to the earlier ones (open loop: a slow server does not
slow the generator down); it goes out on an idle keep-alive HTTP/1.1 connection, a new one
when all are busy (up to ``--max-connections``). Every event has its own pathname
``/e2e/<i>`` and one of 50,000 client addresses (``X-Forwarded-For``), so visitors differ and
every event can be found again in PostgreSQL.

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

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Generator:
    def __init__(self, host: str, port: int, domain: str, total: int, max_connections: int, timeout: float) -> None:
        self.host, self.port, self.domain = host, port, domain
        self.timeout = timeout
        self.max_connections = max_connections
        self.open = 0
        self.idle: list[tuple[Connection, float]] = []  # with the moment it was last used
        self.waiters: deque[asyncio.Future[Connection | None]] = deque()
        self.status = array("h", bytes(2 * total))
        self.answered = array("d", bytes(8 * total))
        self.due = array("d", bytes(8 * total))
        self.sent_late = array("d", bytes(8 * total))
        rng = random.Random(4)
        self.addresses = [
            f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}".encode()
            for _ in range(ADDRESSES)
        ]

    def request(self, index: int) -> bytes:
        referrer = REFERRERS[index % len(REFERRERS)]
        body = (
            f'{{"n":"pageview","u":"https://{self.domain}/e2e/{index}","d":"{self.domain}",'
            f'"r":"{referrer}","w":{320 + index % 2240}}}'
        ).encode()
        head = (
            b"POST /api/event HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: text/plain\r\nUser-Agent: %s\r\n"
            b"X-Forwarded-For: %s\r\nContent-Length: %d\r\n\r\n"
        ) % (self.host.encode(), self.port, AGENT.encode(), self.addresses[index % ADDRESSES], len(body))
        return head + body

    async def connection(self) -> Connection:
        while True:
            now = time.monotonic()
            while self.idle:
                conn, used = self.idle.pop()
                if now - used < IDLE_SECONDS:
                    return conn
                self.discard(conn)  # the server may be closing it (uvicorn's keep-alive timeout is 5 s)
            if self.open < self.max_connections:
                self.open += 1
                try:
                    return await asyncio.open_connection(self.host, self.port)
                except BaseException:
                    self.open -= 1
                    self.wake(None)
                    raise
            # Every connection is busy: wait for one to be released (handed over) or closed
            # (then a new one may be opened). A closed one must wake a waiter too, or the
            # waiters would wait for ever once every connection had failed.
            waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            handed = await waiter
            if handed is not None:
                return handed

    def wake(self, conn: Connection | None) -> bool:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def release(self, conn: Connection) -> None:
        if not self.wake(conn):
            self.idle.append((conn, time.monotonic()))

    def discard(self, conn: Connection) -> None:
        conn[1].close()
        self.open -= 1
        self.wake(None)

    async def exchange(self, conn: Connection, payload: bytes) -> tuple[int, bool]:
        reader, writer = conn
        writer.write(payload)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length:
            await reader.readexactly(length)
        return status, close

    async def send(self, index: int) -> None:
        payload = self.request(index)
        conn: Connection | None = None
        try:
            conn = await self.connection()
            self.sent_late[index] = time.monotonic() - self.due[index]
            status, close = await asyncio.wait_for(self.exchange(conn, payload), self.timeout)
        except TimeoutError:
            self.status[index] = TIMED_OUT
            self.answered[index] = time.monotonic()
            if conn is not None:
                self.discard(conn)
            return
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.status[index] = CONNECTION_ERROR
            self.answered[index] = time.monotonic()
            if conn is not None:
                self.discard(conn)
            return
        self.answered[index] = time.monotonic()
        self.status[index] = status
        if close:
            self.discard(conn)
        else:
            self.release(conn)

    async def run(self, rate: float, total: int, start: float) -> None:
        tasks: set[asyncio.Task[None]] = set()
        index = 0
        while index < total:
            now = time.monotonic()
            while index < total and start + index / rate <= now:
                self.due[index] = start + index / rate
                task = asyncio.create_task(self.send(index))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                index += 1
            if index < total:
                await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks)
        for (_, writer), _ in self.idle:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()
    import uvloop

    total = int(options.rate * options.duration)
    generator = Generator(options.host, options.port, options.domain, total, options.max_connections, options.timeout)
    start = time.monotonic() + 0.1
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(generator.run(options.rate, total, start))
    result = {
        "rate": options.rate,
        "total": total,
        "start": start,
        "end": time.monotonic(),
        "connections": generator.open,
        "status": base64.b64encode(generator.status.tobytes()).decode(),
        "answered": base64.b64encode(generator.answered.tobytes()).decode(),
        "due": base64.b64encode(generator.due.tobytes()).decode(),
        "sent_late": base64.b64encode(generator.sent_late.tobytes()).decode(),
    }
    options.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
