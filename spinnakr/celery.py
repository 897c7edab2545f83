"""The Celery application: queue ``events`` for ingestion, ``default`` for the rest."""

from __future__ import annotations

import os
from typing import Any

import orjson
from celery import Celery
from celery.signals import beat_init, worker_init
from kombu.serialization import register

from analytics.payloads import EVENTS_CONTENT_TYPE, EVENTS_SERIALIZER
from spinnakr.queue import leases

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")

# Event batches (analytics.ingest_batch) are plain JSON written by orjson: a 500-event message
# encodes in about a tenth of the time kombu's json takes, which would be most of what a batch
# of events costs the collector to publish, and decodes in half.
# A content type of its own, so the other tasks keep kombu's json (which carries dates too).


def _encode_events(value: object) -> Any:
    """orjson's bytes (kombu's type hints ask for str, which binary content is not)."""
    return orjson.dumps(value)


register(EVENTS_SERIALIZER, _encode_events, orjson.loads, content_type=EVENTS_CONTENT_TYPE, content_encoding="binary")

# A Redis broker hands a lost worker's messages back within seconds, not after the visibility
# timeout (spinnakr/queue/leases.py).
leases.register()

app = Celery("spinnakr")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _acquire_embedded_servers(**kwargs: object) -> None:
    """A worker or beat started by hand keeps the embedded servers up while it runs."""
    from spinnakr import embedded

    embedded.acquire()
