"""Ingest messages for the queue tests: one event ``{"n": n}`` in batch ``b<n>``, so a test can
tell the messages apart by what it took off the queue."""

from __future__ import annotations

import uuid
from typing import Any

from analytics.payloads import EVENTS_SERIALIZER, INGEST_TASK
from spinnakr.celery import app


def send_numbered(queue: str, n: int, **options: Any) -> str:
    """Publish message ``n`` to ``queue`` (``options`` go to ``send_task``: a countdown…); its task id."""
    task_id = uuid.uuid4().hex
    app.send_task(
        INGEST_TASK,
        kwargs={"batch_id": f"b{n}", "events": [{"n": n}]},
        task_id=task_id,
        queue=queue,
        serializer=EVENTS_SERIALIZER,
        **options,
    )
    return task_id
