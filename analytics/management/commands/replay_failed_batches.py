"""``manage.py replay_failed_batches``: queue again the batches the worker could not ingest.

A batch parked before the worker screened its events (``analytics.ingest.screen``) may hold text
PostgreSQL cannot store (a NUL, a lone surrogate). Its rollups were applied, and its batch
marker keeps each event's visit start in event order, so the replay must store every event of
it: each such character is replaced by U+FFFD, the event is kept, and Redis and PostgreSQL
count the same events.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from analytics.ingest import screen
from analytics.ingest.pipeline import FAILED_BATCHES
from analytics.tasks import ingest_batch
from spinnakr import redis_clients


class Command(BaseCommand):
    help = (
        "Publish the parked failed batches to the events queue again (same batch ids: idempotent), "
        "with the characters PostgreSQL cannot store replaced by U+FFFD."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--list", action="store_true", help="only show what is parked")

    def handle(self, *args: Any, **options: Any) -> None:
        client = redis_clients.data()
        if options["list"]:
            for raw in client.lrange(FAILED_BATCHES, 0, -1):
                record = json.loads(raw)
                events = record["events"]
                count = len(events) if isinstance(events, list) else "no list of"
                self.stdout.write(f"{record['batch_id']}: {count} events, {record['error']}")
            return
        replayed = 0
        while (popped := client.rpop(FAILED_BATCHES)) is not None:
            raw = str(popped)
            record = json.loads(raw)
            events = record["events"]
            if isinstance(events, list):
                events = [screen.sanitize(event) for event in events]
            try:
                ingest_batch.apply_async(
                    kwargs={"batch_id": record["batch_id"], "events": events}, queue=settings.EVENTS_QUEUE
                )
            except Exception:
                client.rpush(FAILED_BATCHES, raw)  # back where it was: nothing is lost
                raise
            replayed += 1
        self.stdout.write(f"queued {replayed} batches again")
