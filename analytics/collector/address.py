"""The client's address: the peer, or the first untrusted hop of X-Forwarded-For behind trusted proxies."""

from __future__ import annotations

import ipaddress
import logging
import socket

from django.conf import settings

from analytics.collector.http import Scope

logger = logging.getLogger(__name__)

# Client address ---------------------------------------------------------------

Networks = list[ipaddress.IPv4Network | ipaddress.IPv6Network]
_trusted: Networks = [ipaddress.ip_network(item, strict=False) for item in settings.TRUSTED_PROXIES]


def _in(address: str, networks: Networks) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def _clean_address(value: str) -> str | None:
    """The canonical text of an IPv4 or IPv6 address (a port stripped), or None."""
    value = value.strip()
    if value.startswith("["):  # [v6]:port
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    # inet_pton is C and strict (no leading zeros, no zone ids): ipaddress costs 20x more.
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, value))
    except (OSError, ValueError):
        return None


def _forwarded_for(scope: Scope) -> str | None:
    values = [value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-forwarded-for"]
    return ",".join(values) if values else None


def client_address(scope: Scope, trusted: Networks | None = None) -> str:
    """The address that sent the request.

    With no trusted proxies configured, the leftmost X-Forwarded-For entry of any peer (as
    Plausible reads it for server-side senders). With trusted proxies, only a trusted peer's
    header counts, and it is read from the right past the trusted proxies' own entries: load
    balancers append to the header, so the entries left of the first untrusted one are the
    client's to forge.
    """
    networks = _trusted if trusted is None else trusted
    client = scope.get("client")
    peer = client[0] if client else ""
    header = _forwarded_for(scope)
    if header is None:
        return peer
    if not networks:
        first = _clean_address(header.split(",", 1)[0])
        return peer if first is None else first
    if not _in(peer, networks):
        return peer
    address = peer
    for entry in reversed(header.split(",")):
        forwarded = _clean_address(entry)
        if forwarded is None:
            break  # a malformed entry: nothing left of it can be believed
        address = forwarded
        if not _in(address, networks):
            break
    return address
