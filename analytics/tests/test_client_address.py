"""Which address the collector takes for a request (rate limits, visitor id, country)."""

from __future__ import annotations

import ipaddress

import pytest

from analytics.collector.address import Networks, client_address

BALANCERS: Networks = [ipaddress.ip_network("10.0.0.0/8")]


def scope(peer: str, *forwarded: str) -> dict[str, object]:
    return {"client": (peer, 4321), "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded]}


def test_it_takes_the_peer_without_a_forwarded_header() -> None:
    assert client_address(scope("198.51.100.7"), BALANCERS) == "198.51.100.7"


def test_it_takes_the_leftmost_entry_when_no_proxy_is_configured() -> None:
    assert client_address(scope("198.51.100.7", "203.0.113.9, 10.0.0.2"), []) == "203.0.113.9"


def test_it_ignores_the_header_of_a_peer_that_is_not_a_trusted_proxy() -> None:
    assert client_address(scope("198.51.100.7", "203.0.113.9"), BALANCERS) == "198.51.100.7"


def test_it_takes_the_address_the_trusted_balancer_appended_not_what_the_client_forged() -> None:
    # The client sent "1.2.3.4" itself; the balancer (10.0.0.2) appended the address it saw.
    assert client_address(scope("10.0.0.2", "1.2.3.4, 203.0.113.9"), BALANCERS) == "203.0.113.9"


def test_it_skips_every_trusted_hop_from_the_right() -> None:
    assert client_address(scope("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.5"), BALANCERS) == "203.0.113.9"


def test_it_reads_several_forwarded_headers_as_one_list() -> None:
    assert client_address(scope("10.0.0.2", "1.2.3.4", "203.0.113.9"), BALANCERS) == "203.0.113.9"


@pytest.mark.parametrize("header", ["not-an-address", "1.2.3.4, garbage"])
def test_it_believes_nothing_left_of_a_malformed_entry(header: str) -> None:
    assert client_address(scope("10.0.0.2", header), BALANCERS) == "10.0.0.2"


def test_it_takes_the_leftmost_hop_when_every_hop_is_trusted() -> None:
    assert client_address(scope("10.0.0.2", "10.0.0.9, 10.0.0.5"), BALANCERS) == "10.0.0.9"
