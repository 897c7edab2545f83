"""What the ASGI application routes around Django (see ``spinnakr.asgi``).

``HTTP_ROUTES`` maps exact paths to lean ASGI handlers (the collector),
``HTTP_PREFIX_ROUTES`` path prefixes (the pixel);
``websocket_urlpatterns`` are the Channels consumers; ``STARTUP`` and
``SHUTDOWN`` are coroutines run on the server's lifespan events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.urls import URLPattern, URLResolver, path

from analytics.collector import app as collector
from analytics.live import consumers

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

HTTP_ROUTES: dict[str, ASGIApp] = {}
# Path prefixes → lean handlers, tried in order when no exact route matches.
HTTP_PREFIX_ROUTES: dict[str, ASGIApp] = {}
websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/sites/", consumers.OverviewLiveConsumer.as_asgi()),
    path("ws/sites/<path:domain>/", consumers.SiteLiveConsumer.as_asgi()),
    path("ws/feed/<path:domain>/", consumers.FeedConsumer.as_asgi()),
]
STARTUP: list[Callable[[], Awaitable[None]]] = []
SHUTDOWN: list[Callable[[], Awaitable[None]]] = []


HTTP_ROUTES.update(collector.HTTP_ROUTES)
HTTP_PREFIX_ROUTES.update(collector.HTTP_PREFIX_ROUTES)
STARTUP.extend(collector.STARTUP)
SHUTDOWN.extend(collector.SHUTDOWN)
