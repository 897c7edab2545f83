"""``manage.py replay_failed_batches``: queue again the batches the worker could not ingest."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from analytics import rollups
from analytics.tasks import FAILED_BATCHES, ingest_batch


class Command(BaseCommand):
    help = "Publish the parked failed batches to the events queue again (same batch ids: idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--list", action="store_true", help="only show what is parked")

    def handle(self, *args: Any, **options: Any) -> None:
        client = rollups.client()
        if options["list"]:
            for raw in client.lrange(FAILED_BATCHES, 0, -1):
                record = json.loads(raw)
                self.stdout.write(f"{record['batch_id']}: {len(record['events'])} events, {record['error']}")
            return
        replayed = 0
        while (popped := client.rpop(FAILED_BATCHES)) is not None:
            record = json.loads(str(popped))
            ingest_batch.apply_async(
                kwargs={"batch_id": record["batch_id"], "events": record["events"]}, queue=settings.EVENTS_QUEUE
            )
            replayed += 1
        self.stdout.write(f"queued {replayed} batches again")
