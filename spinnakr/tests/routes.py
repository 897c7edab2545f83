"""The URLconf's routes, walked once for every test that must cover each route."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from django.contrib.admindocs.views import simplify_regex
from django.urls import URLPattern, URLResolver, get_resolver


def walk(patterns: Sequence[URLPattern | URLResolver], prefix: str = "") -> Iterator[str]:
    """Every route under ``patterns``, through includes, as ``/path/<param>/`` templates."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield simplify_regex(prefix + str(entry.pattern))


def http_routes() -> list[str]:
    return sorted(set(walk(get_resolver().url_patterns)))


def websocket_routes() -> list[str]:
    from analytics import routes

    return sorted(set(walk(routes.websocket_urlpatterns)))
