"""``GET /metrics``: the Prometheus text format, for a scraper that holds ``METRICS_TOKEN``.

Unset token: 404, as if the route did not exist. Without ``Authorization: Bearer <token>``, or with
another token: 401 with an empty body, whichever it was. The values are the sum over every
process of the host that writes into ``spinnakr.metrics.MULTIPROC_DIR``, plus the depth of the
queues, asked of the broker at each scrape.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from spinnakr.metrics import MULTIPROC_DIR

logger = logging.getLogger(__name__)
BROKER_TIMEOUT_SECONDS = 2.0


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    token: str = settings.METRICS_TOKEN
    if not token:
        raise Http404
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        response = HttpResponse(b"", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)


def render() -> bytes:
    """Every process's values summed, and the queues' depth, in the text format."""
    forget_dead_processes()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(MULTIPROC_DIR))
    registry.register(QueueDepth())
    return generate_latest(registry)


def forget_dead_processes() -> None:
    """Drop the live gauges of processes that have exited (a uvicorn or pool process replaced):
    a ``livesum`` gauge counts only the living. Counters and histograms stay, so totals survive."""
    for path in MULTIPROC_DIR.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid), str(MULTIPROC_DIR))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class QueueDepth(Collector):
    """``spinnakr_queue_messages{queue}``: the messages waiting in each queue, asked of the broker.

    One passive declare per queue: RabbitMQ answers its ready messages, kombu's Redis transport
    the length of the queue's lists. A broker that does not answer leaves the samples out (and a
    log line), so a scrape still shows everything else.
    """

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("spinnakr_queue_messages", "Messages waiting in a queue", labels=["queue"])
        conn = Connection(str(settings.CELERY_BROKER_URL), connect_timeout=BROKER_TIMEOUT_SECONDS)
        try:
            with conn:
                conn.ensure_connection(max_retries=1, timeout=int(BROKER_TIMEOUT_SECONDS))
                depths = [(queue, _depth(conn, queue)) for queue in (settings.EVENTS_QUEUE, settings.DEFAULT_QUEUE)]
        except (OSError, *conn.connection_errors) as exc:  # type: ignore[misc]
            logger.warning("metrics.queue_unanswered", extra={"error": repr(exc)[:300]})
            depths = []
        for queue, depth in depths:
            family.add_metric([queue.removeprefix(settings.QUEUE_PREFIX)], depth)
        yield family


def _depth(conn: Connection, queue: str) -> int:
    channel = conn.channel()
    try:
        return int(channel.queue_declare(queue, passive=True).message_count)  # type: ignore[attr-defined]
    except conn.channel_errors:
        return 0  # RabbitMQ: never declared yet; kombu's Redis transport: an empty queue has no list
    finally:
        channel.close()  # type: ignore[attr-defined]
