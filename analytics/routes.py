"""What the ASGI application routes around Django (see ``spinnakr.asgi``).

``HTTP_ROUTES`` maps exact paths to lean ASGI handlers (the collector);
``websocket_urlpatterns`` are the Channels consumers; ``STARTUP`` and
``SHUTDOWN`` are coroutines run on the server's lifespan events.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.urls import URLPattern, URLResolver, path

from analytics import live

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

HTTP_ROUTES: dict[str, ASGIApp] = {}
websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/sites/", live.OverviewLiveConsumer.as_asgi()),
    path("ws/sites/<path:domain>/", live.SiteLiveConsumer.as_asgi()),
]
STARTUP: list[Callable[[], Awaitable[None]]] = []
SHUTDOWN: list[Callable[[], Awaitable[None]]] = []
