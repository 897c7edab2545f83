"""Rendezvous hashing spreads sites over the rollups' servers, stably and with little movement."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from spinnakr import rendezvous

SERVERS = ("redis://10.0.0.1:6379/0", "redis://10.0.0.2:6379/0", "redis://10.0.0.3:6379/0")
SITES = range(1, 1001)
ROOT = Path(__file__).resolve().parents[2]


def placement(urls: tuple[str, ...]) -> dict[int, str]:
    return {site: rendezvous.choose(urls, site) for site in SITES}


def test_it_spreads_a_thousand_sites_over_three_servers() -> None:
    shares = Counter(placement(SERVERS).values())

    assert set(shares) == set(SERVERS)
    assert all(200 <= count <= 470 for count in shares.values()), shares


def test_the_order_of_the_servers_does_not_move_a_site() -> None:
    assert placement(tuple(reversed(SERVERS))) == placement(SERVERS)


def test_removing_a_server_moves_only_its_sites() -> None:
    before = placement(SERVERS)
    after = placement(SERVERS[:2])

    moved = {site for site in SITES if before[site] != after[site]}
    assert moved == {site for site in SITES if before[site] == SERVERS[2]}


def test_adding_a_server_moves_sites_only_onto_it() -> None:
    before = placement(SERVERS)
    after = placement((*SERVERS, "redis://10.0.0.4:6379/0"))

    assert {after[site] for site in SITES if before[site] != after[site]} == {"redis://10.0.0.4:6379/0"}


def test_every_process_agrees_on_the_placement() -> None:
    # Python's hash() is salted per process; the weights must not be.
    code = f"from spinnakr import rendezvous; print([rendezvous.choose({SERVERS!r}, s) for s in (1, 2, 3, 42)])"
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        for _ in range(2)
    ]

    assert [run.stdout for run in runs] == [f"{[SERVERS[0], SERVERS[0], SERVERS[2], SERVERS[1]]!r}\n"] * 2


def test_a_server_is_known_by_its_address_and_database_not_its_scheme_or_password() -> None:
    assert rendezvous.identity("rediss://:secret@Cache.Example:6380/2") == "cache.example:6380/2"
    assert rendezvous.identity("redis://cache.example:6380/2") == "cache.example:6380/2"
    assert rendezvous.identity("redis://cache.example") == "cache.example:6379/0"
    assert rendezvous.identity("unix:///run/valkey.sock?db=3") == "unix:/run/valkey.sock/3"


def test_a_master_behind_sentinel_is_known_by_its_name_so_a_failover_moves_no_site() -> None:
    named = ("redis+sentinel://:secret@Rollups-1/0", "redis+sentinel://Rollups-1/0", "redis+sentinel://Rollups-1/1")

    assert [rendezvous.identity(url) for url in named] == [
        "sentinel:Rollups-1/0",
        "sentinel:Rollups-1/0",
        "sentinel:Rollups-1/1",
    ]
    assert rendezvous.identity("redis://rollups-1:6379/0") != rendezvous.identity("redis+sentinel://rollups-1/0")
