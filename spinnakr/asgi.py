"""The one ASGI application: lean handlers for the hot paths in front of Django.

- ``/static/…`` and the tracking script: served from memory by ``spinnakr.staticfiles``.
- the paths in ``analytics.routes.HTTP_ROUTES`` (the collector): lean ASGI
  handlers that never enter Django's request machinery.
- everything else over HTTP: Django.
- WebSocket: Channels, authenticated by the Django session.

Django and the WebSocket routes see the client and scheme a trusted proxy forwarded
(uvicorn's ``ProxyHeadersMiddleware``, peers from ``settings.FORWARDED_ALLOW_IPS``); the
server runs with ``--no-proxy-headers``. The collector reads ``X-Forwarded-For`` itself
(``TRUSTED_PROXIES``): uvicorn's middleware would parse every random client address
again (~5 µs a request) and hand the collector a peer that is no longer the real one.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware


def behind_proxies(app: Any) -> Any:
    """``app`` with the client and scheme a trusted proxy forwarded (uvicorn's types are not Django's)."""
    return ProxyHeadersMiddleware(app, trusted_hosts=settings.FORWARDED_ALLOW_IPS)


django_app = behind_proxies(get_asgi_application())

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from analytics import routes  # noqa: E402
from spinnakr import embedded, staticfiles  # noqa: E402

embedded.acquire()

websocket_app = behind_proxies(
    AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(routes.websocket_urlpatterns)))
)


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                for hook in routes.STARTUP:
                    await hook()
            except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            for hook in routes.SHUTDOWN:
                await hook()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "http":
        path: str = scope["path"]
        handler = routes.HTTP_ROUTES.get(path)
        if handler is None:
            prefix = next((prefix for prefix in routes.HTTP_PREFIX_ROUTES if path.startswith(prefix)), None)
            handler = routes.HTTP_PREFIX_ROUTES[prefix] if prefix is not None else None
        if handler is not None:
            await handler(scope, receive, send)
        elif path.startswith("/static/"):
            await staticfiles.serve(scope, receive, send, staticfiles.load(path[len("/static/") :]))
        else:
            await django_app(scope, receive, send)
    elif kind == "websocket":
        await websocket_app(scope, receive, send)
    elif kind == "lifespan":
        await lifespan(scope, receive, send)
