"""The publisher's linger follows the arrival rate (no broker needed)."""

from __future__ import annotations

import pytest

from analytics import publish
from analytics.publish import Publisher


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def arrive(publisher: Publisher, clock: Clock, rate: float, seconds: float) -> None:
    """Events arriving one at a time at ``rate`` a second for ``seconds``."""
    for _ in range(int(rate * seconds)):
        clock.now += 1 / rate
        publisher._count_arrivals(1)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("analytics.publish.time.monotonic", clock)
    return clock


def test_a_new_publisher_waits_the_longest_linger(clock: Clock) -> None:
    assert Publisher().current_linger() == publish.MAX_LINGER


@pytest.mark.parametrize(
    ("rate", "linger"),
    [(200, 0.02), (1000, 0.02), (2000, 0.01), (4000, 0.005), (20_000, 0.005)],
)
def test_the_linger_is_the_time_twenty_events_take_to_arrive_within_bounds(
    clock: Clock, rate: float, linger: float
) -> None:
    publisher = Publisher()

    arrive(publisher, clock, rate, 3.0)

    assert publisher.current_linger() == pytest.approx(linger, rel=0.05)


def test_the_linger_grows_again_when_the_rate_falls(clock: Clock) -> None:
    publisher = Publisher()
    arrive(publisher, clock, 10_000, 2.0)
    assert publisher.current_linger() == publish.LINGER

    arrive(publisher, clock, 100, 3.0)

    assert publisher.current_linger() == publish.MAX_LINGER
