"""``GET /healthz``: the state of each server the service depends on."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from kombu import Connection

from spinnakr import redis_clients, rendezvous

logger = logging.getLogger(__name__)
TIMEOUT_SECONDS = 2.0


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_redis() -> None:
    """The data Redis, then each server holding rollups (``REDIS_URLS``), named when it fails."""
    redis_clients.data(timeout=TIMEOUT_SECONDS).ping()
    for url in redis_clients.rollup_urls():
        if url == settings.REDIS_DATA_URL:
            continue
        try:
            redis_clients.ping_rollups(url, timeout=TIMEOUT_SECONDS)
        except redis.RedisError as exc:
            raise redis.ConnectionError(f"rollups on {rendezvous.identity(url)}: {exc}") from exc


def check_broker() -> None:
    with Connection(str(settings.CELERY_BROKER_URL), connect_timeout=TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, timeout=int(TIMEOUT_SECONDS))


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "broker": check_broker,
}


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    components: dict[str, dict[str, str]] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means the component is down
            logger.warning("healthz.down", extra={"component": name, "error": str(exc)})
            components[name] = {"state": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
        else:
            components[name] = {"state": "up"}
    down = [name for name, state in components.items() if state["state"] != "up"]
    body = {"status": "down" if down else "ok", "down": down, "components": components}
    return JsonResponse(body, status=503 if down else 200)
