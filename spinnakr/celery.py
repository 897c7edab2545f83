"""The Celery application: queue ``events`` for ingestion, ``default`` for the rest."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import beat_init, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")

app = Celery("spinnakr")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def _acquire_embedded_servers(**kwargs: object) -> None:
    """A worker or beat started by hand keeps the embedded servers up while it runs."""
    from spinnakr import embedded

    embedded.acquire()
