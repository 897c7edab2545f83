"""A Celery app for the publishing tests: a real worker that records what ``analytics.ingest_batch`` receives.

It consumes the test events queue on the test broker with the project's
queue declarations, exactly as the project's worker does, and appends each
batch as a JSON line to the file named by ``PROBE_OUTPUT``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spinnakr.settings")

from django.conf import settings

app = Celery("probe")
app.conf.update(
    broker_url=settings.CELERY_BROKER_URL,
    broker_transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    task_queues=settings.CELERY_TASK_QUEUES,
    accept_content=["json"],
    task_acks_late=True,
    worker_hijack_root_logger=False,
)


@app.task(name="analytics.ingest_batch")
def ingest_batch(batch_id: str, events: list[dict[str, Any]]) -> None:
    with Path(os.environ["PROBE_OUTPUT"]).open("a") as output:
        output.write(json.dumps({"batch_id": batch_id, "events": events}) + "\n")
