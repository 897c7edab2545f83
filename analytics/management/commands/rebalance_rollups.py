"""``manage.py rebalance_rollups --add URL | --remove URL | --servers URL,URL,…``: move sites between rollups servers."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.ingest.rebalance import SETTLE_SECONDS, RebalanceError, rebalance
from spinnakr import redis_clients
from spinnakr.settings import redis_db_url


class Command(BaseCommand):
    help = (
        "Add or remove a Redis server holding rollups, moving the sites whose server changes while "
        "ingestion goes on (docs/operations.md, 'Adding or removing a rollups server')."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--add", metavar="URL", help="a server to add to those in use")
        which.add_argument("--remove", metavar="URL", help="a server in use to empty and stop using")
        which.add_argument("--servers", metavar="URL,URL", help="the whole new set, comma-separated")
        parser.add_argument(
            "--settle", type=float, default=SETTLE_SECONDS, help="seconds each process is given to learn a step"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.ROLLUP_REDIS_URLS:
            raise CommandError("the rollups live on the data Redis: set REDIS_URLS to the servers in use first")
        current = redis_clients.rollup_placement().servers
        try:
            if options["servers"]:
                servers = tuple(
                    redis_db_url(u.strip(), 0, "--servers") for u in options["servers"].split(",") if u.strip()
                )
            elif options["add"]:
                servers = (*current, redis_db_url(options["add"], 0, "--add"))
            else:
                gone = redis_db_url(options["remove"], 0, "--remove")
                if gone not in current:
                    raise CommandError(f"{options['remove']!r} is not a server in use")
                servers = tuple(url for url in current if url != gone)
            if not servers or len(set(servers)) != len(servers):
                raise CommandError("the new set must name at least one server, each once")
            report = rebalance(servers, settle=options["settle"], say=self.stdout.write)
        except (RebalanceError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"moved {report.moved} sites ({report.keys} keys) in {report.seconds:.1f} s")
