"""``manage.py rebuild_rollups --site DOMAIN | --all [--since DATE]``: recompute sites' rollups."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Site
from analytics.ingest.rebuild import RebuildRunning, rebuild_site


class Command(BaseCommand):
    help = "Recompute a site's Redis rollups from the raw events in PostgreSQL, while ingestion goes on."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--site", help="the site's domain")
        # After a change of REDIS_URLS, which moves sites between the rollups' servers.
        which.add_argument("--all", action="store_true", help="every site, one after another")
        parser.add_argument("--since", help="first day to rebuild (YYYY-MM-DD, site timezone); default: all data")

    def handle(self, *args: Any, **options: Any) -> None:
        sites: Iterable[Site] = Site.objects.select_related("account").order_by("pk")
        if not options["all"]:
            site = Site.objects.select_related("account").filter(domain=options["site"]).first()
            if site is None:
                raise CommandError(f"no site with the domain {options['site']!r}")
            sites = [site]
        since = None
        if options["since"]:
            try:
                since = date.fromisoformat(options["since"])
            except ValueError:
                raise CommandError(f"--since {options['since']!r} is not a date (YYYY-MM-DD)") from None
        running = []
        for site in sites:
            try:
                report = rebuild_site(site, since)
            except RebuildRunning as exc:
                running.append(str(exc))
                continue
            self.stdout.write(
                f"rebuilt {site.domain}: {report.events} events, {report.keys} keys, "
                f"complete since {report.complete_since}, {report.seconds:.1f} s"
            )
        if running:
            raise CommandError("; ".join(running))
