"""Waiting for another process or thread: poll a condition until a deadline, never a fixed sleep.

A test that lets time pass for its own logic (an expiry, a throttle window) moves the clock with
time-machine instead; only what runs elsewhere (a server starting, a worker applying a batch, a
Redis key expiring) is waited for here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.1, message: str = "") -> T:
    """Poll ``predicate`` until it answers something truthy and return that; after ``timeout``
    seconds fail, saying what was awaited (``message``, else the predicate)."""
    deadline = time.monotonic() + timeout
    while not _settled(value := predicate(), deadline, timeout, message or predicate):
        time.sleep(interval)
    return value


async def wait_for_async(
    predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, message: str = ""
) -> T:
    """``wait_for`` inside an event loop, which runs the awaited work between polls."""
    deadline = time.monotonic() + timeout
    while not _settled(value := predicate(), deadline, timeout, message or predicate):
        await asyncio.sleep(interval)
    return value


def _settled(value: object, deadline: float, timeout: float, awaited: object) -> bool:
    """Whether the wait is over (``value`` is truthy); an ``AssertionError`` once past ``deadline``."""
    if value:
        return True
    if time.monotonic() > deadline:
        raise AssertionError(f"gave up after {timeout} s waiting for {awaited}")
    return False
