"""Typed readers for environment variables.

Every reader raises ``ImproperlyConfigured`` naming the variable and what is
wrong with it, so a malformed value stops start-up instead of surfacing later.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip()


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}")
    return number


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url(name: str, schemes: tuple[str, ...]) -> str | None:
    """Return the URL in ``name`` or ``None`` when unset or empty.

    The scheme must be one of ``schemes`` and the URL must name a host or,
    for socket schemes, a path.
    """
    value = _raw(name)
    if not value:
        return None
    problem = _url_problem(value, schemes)
    if problem:
        raise ImproperlyConfigured(f"{name}={_redact(value)!r} {problem}")
    return value


def env_url_list(name: str, schemes: tuple[str, ...], same: Callable[[str], str] = str) -> list[str]:
    """The comma-separated URLs in ``name`` (empty when unset), each checked as ``env_url``
    checks one; two URLs for which ``same`` answers alike are refused."""
    urls = env_list(name)
    seen: set[str] = set()
    for url in urls:
        problem = _url_problem(url, schemes)
        if problem:
            raise ImproperlyConfigured(f"{name}: {_redact(url)!r} {problem}")
        if same(url) in seen:
            raise ImproperlyConfigured(f"{name}: {_redact(url)!r} names the same server as an earlier entry")
        seen.add(same(url))
    return urls


def _url_problem(value: str, schemes: tuple[str, ...]) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        allowed = ", ".join(f"{scheme}://" for scheme in schemes)
        return f"must start with one of {allowed}"
    if not parts.hostname and not parts.path.strip("/") and "host=" not in parts.query:
        return "names no host"
    try:
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError:
        return "has an invalid port"
    return None


def _redact(url: str) -> str:
    """Hide a password in a URL before it goes into an error message."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def env_host_ports(name: str, *, needed: bool = False) -> tuple[tuple[str, int], ...]:
    """The comma-separated ``host:port`` pairs in ``name`` (``[v6]:port`` for an IPv6 address);
    with ``needed``, an empty list is refused."""
    pairs = []
    for item in env_list(name):
        parts = urlsplit(f"//{item}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path or parts.query:
            raise ImproperlyConfigured(f"{name}: {item!r} is not host:port")
        pairs.append((parts.hostname, port))
    if needed and not pairs:
        raise ImproperlyConfigured(f"{name} is required here: at least one host:port")
    return tuple(pairs)
