"""``spinnakr.placement``: the rollups servers in use, as every process learns them from the data Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from spinnakr import breaker, placement, redis_clients, rendezvous
from spinnakr.tests.waiting import wait_for

THREE = ("redis://10.0.0.1:6379/0", "redis://10.0.0.2:6379/0", "redis://10.0.0.3:6379/0")
FOUR = (*THREE, "redis://10.0.0.4:6379/0")


@pytest.fixture
def data() -> Iterator[redis.Redis]:
    client = redis_clients.data()
    client.delete(placement.KEY)
    placement.forget()
    yield client
    client.delete(placement.KEY)
    placement.forget()


def test_a_move_marks_moving_exactly_the_sites_whose_server_changes() -> None:
    move = placement.Placement(THREE, FOUR)

    moving = [site for site in range(1, 1001) if move.moving(site)]

    assert moving == [
        site for site in range(1, 1001) if rendezvous.choose(THREE, site) != rendezvous.choose(FOUR, site)
    ]
    assert {move.destination(site) for site in moving} == {FOUR[3]}
    assert [move.server_of(site) for site in range(1, 1001)] == [rendezvous.choose(THREE, s) for s in range(1, 1001)]


def test_outside_a_move_no_site_is_moving_and_each_is_where_it_will_stay() -> None:
    settled = placement.Placement(FOUR)

    assert [(settled.moving(site), settled.destination(site)) for site in range(1, 101)] == [
        (False, settled.server_of(site)) for site in range(1, 101)
    ]


def test_a_placement_reads_back_as_it_was_written() -> None:
    move = placement.Placement(THREE, FOUR)

    assert placement.parse(move.dumps()) == move
    assert move.every_server() == FOUR


def test_without_the_key_the_configured_servers_are_in_use(data: redis.Redis) -> None:
    assert placement.current(data, THREE) == placement.Placement(THREE)


def test_a_process_learns_a_new_placement_once_its_copy_is_older_than_the_ttl(data: redis.Redis) -> None:
    placement.current(data, THREE)
    data.set(placement.KEY, placement.Placement(FOUR).dumps())

    assert placement.current(data, THREE) == placement.Placement(THREE)  # its copy, not yet stale
    assert wait_until_changed(data) == placement.Placement(FOUR)


def wait_until_changed(data: redis.Redis) -> placement.Placement:
    wait_for(lambda: placement.current(data, THREE) != placement.Placement(THREE), timeout=placement.TTL + 3)
    return placement.current(data, THREE)


def test_a_breaker_skips_a_server_that_failed_until_it_answers_again() -> None:
    breaker.reset()
    breaker.trip(THREE[0], ConnectionError("refused"))

    opened = [breaker.is_open(url) for url in THREE]
    breaker.close(THREE[0])

    assert opened == [True, False, False]
    assert breaker.is_open(THREE[0]) is False
    assert breaker.failing_for(THREE[0]) == 0.0
