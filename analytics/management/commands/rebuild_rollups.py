"""``manage.py rebuild_rollups --site DOMAIN [--since DATE]``: recompute a site's rollups."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Site
from analytics.ingest.rebuild import RebuildRunning, rebuild_site


class Command(BaseCommand):
    help = "Recompute a site's Redis rollups from the raw events in PostgreSQL, while ingestion goes on."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", required=True, help="the site's domain")
        parser.add_argument("--since", help="first day to rebuild (YYYY-MM-DD, site timezone); default: all data")

    def handle(self, *args: Any, **options: Any) -> None:
        site = Site.objects.select_related("account").filter(domain=options["site"]).first()
        if site is None:
            raise CommandError(f"no site with the domain {options['site']!r}")
        since = None
        if options["since"]:
            try:
                since = date.fromisoformat(options["since"])
            except ValueError:
                raise CommandError(f"--since {options['since']!r} is not a date (YYYY-MM-DD)") from None
        try:
            report = rebuild_site(site, since)
        except RebuildRunning as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"rebuilt {site.domain}: {report.events} events, {report.keys} keys, "
            f"complete since {report.complete_since}, {report.seconds:.1f} s"
        )
