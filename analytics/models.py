"""The raw event store: one row per accepted event, kept for the plan's retention.

``analytics_event`` is a PostgreSQL table partitioned by month on ``timestamp``
(created by migration 0001, partitions by ``analytics.ingest.store``). Its primary key
``(site_id, timestamp, event_id)`` contains the partition key, so re-inserting a
batch with ``ON CONFLICT DO NOTHING`` adds nothing; every index leads with the
site. Django does not manage the table; this model is for reads and the admin.
"""

from __future__ import annotations

import re
import secrets

from django.contrib.auth.hashers import check_password, make_password
from django.db import models
from django.utils import timezone as django_timezone


def new_share_slug() -> str:
    return secrets.token_urlsafe(24)


class Event(models.Model):
    # The table's key (site_id, timestamp, event_id) holds the partition key, which PostgreSQL
    # requires of a partitioned table's primary key; Django 5.2 maps it as a composite key.
    pk = models.CompositePrimaryKey("site_id", "timestamp", "event_id")
    site_id = models.BigIntegerField()
    timestamp = models.DateTimeField()
    event_id = models.UUIDField()
    name = models.TextField()
    visitor_id = models.BigIntegerField()
    visit_id = models.BigIntegerField()
    hostname = models.TextField(default="")
    pathname = models.TextField(default="/")
    referrer = models.TextField(default="")
    referrer_source = models.TextField(default="")
    channel = models.TextField(default="")
    utm_source = models.TextField(default="")
    utm_medium = models.TextField(default="")
    utm_campaign = models.TextField(default="")
    utm_content = models.TextField(default="")
    utm_term = models.TextField(default="")
    country = models.TextField(default="")
    browser = models.TextField(default="")
    browser_version = models.TextField(default="")
    os = models.TextField(default="")
    os_version = models.TextField(default="")
    device = models.TextField(default="")
    screen = models.TextField(default="")
    props = models.JSONField(default=dict)
    revenue_amount = models.DecimalField(max_digits=18, decimal_places=4, null=True)
    revenue_currency = models.TextField(default="")
    interactive = models.BooleanField(default=True)
    scroll_depth = models.SmallIntegerField(null=True)
    engagement_ms = models.IntegerField(null=True)

    class Meta:
        managed = False
        db_table = "analytics_event"

    def __str__(self) -> str:
        return f"{self.name} {self.pathname} at {self.timestamp:%Y-%m-%d %H:%M:%S}"


class Goal(models.Model):
    """A conversion goal of a site: a custom event name or a page path pattern.

    A page path may hold wildcards: ``*`` matches within one path segment,
    ``**`` matches across segments (``/blog/**`` is every page under /blog/).
    """

    site = models.ForeignKey("accounts.Site", on_delete=models.CASCADE, related_name="goals")
    event_name = models.CharField(max_length=120, blank=True, default="")
    page_path = models.CharField(max_length=2000, blank=True, default="")
    display_name = models.CharField(max_length=120)
    currency = models.CharField(max_length=3, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["site", "display_name"], name="goal_site_display_name"),
            models.CheckConstraint(
                condition=(models.Q(event_name="") & ~models.Q(page_path=""))
                | (~models.Q(event_name="") & models.Q(page_path="")),
                name="goal_event_xor_page",
            ),
        ]
        ordering = ["site", "id"]

    def __str__(self) -> str:
        return self.display_name

    @property
    def goal_type(self) -> str:
        return "event" if self.event_name else "page"

    def page_regex(self) -> str:
        """A PostgreSQL and Python regular expression matching the page path pattern, anchored."""
        return page_pattern_regex(self.page_path)


def page_pattern_regex(pattern: str) -> str:
    out = ["^"]
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    out.append("$")
    return "".join(out)


class APIRateLimit(models.Model):
    """A per-account override of the Stats API rate limit (``settings.API_RATE_LIMIT_PER_HOUR``)."""

    account = models.OneToOneField("accounts.Account", on_delete=models.CASCADE, related_name="api_rate_limit")
    requests_per_hour = models.PositiveIntegerField()

    class Meta:
        verbose_name = "API rate limit"

    def __str__(self) -> str:
        return f"{self.account}: {self.requests_per_hour}/hour"


class SharedLink(models.Model):
    """A secret link that shows one site's dashboard read-only, optionally behind a password.

    The slug is the secret (192 random bits); the password, when set, is stored
    hashed with Django's password hashers. Deleting the link revokes it at once,
    for page views, queries and live sockets alike.
    """

    site = models.ForeignKey("accounts.Site", on_delete=models.CASCADE, related_name="shared_links")
    name = models.CharField(max_length=100)
    slug = models.CharField(max_length=64, unique=True, default=new_share_slug)
    password_hash = models.CharField(max_length=256, blank=True)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(default=django_timezone.now)

    class Meta:
        indexes = [models.Index(fields=["site", "created"], name="sharedlink_site_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.site})"

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)

    def set_password(self, raw: str | None) -> None:
        self.password_hash = make_password(raw) if raw else ""

    def check_password(self, raw: str) -> bool:
        return bool(self.password_hash) and check_password(raw, self.password_hash)


class RollupMark(models.Model):
    """Batches the worker applied to a rollup server behind Sentinel, with the token it left there.

    Written in the raw events' transaction, one row per site of a group of batches, and kept a
    quarter of an hour: after a failover the new master's tokens show which of them it missed
    (``analytics.ingest.failover``). An operational log read by server, not a tenant's record.
    """

    server = models.CharField(max_length=200)  # the server's identity (spinnakr.rendezvous)
    token = models.CharField(max_length=32)
    site_id = models.BigIntegerField()
    first_event = models.DateTimeField()
    last_event = models.DateTimeField()
    events = models.PositiveIntegerField()
    applied = models.DateTimeField(default=django_timezone.now)

    class Meta:
        indexes = [models.Index(fields=["server", "applied"], name="rollupmark_server_applied")]

    def __str__(self) -> str:
        return f"{self.token} on {self.server}: site {self.site_id}"


class RollupRebuild(models.Model):
    """A rebuild of a site's rollups from the raw events that the service started by itself, and why."""

    site = models.ForeignKey("accounts.Site", on_delete=models.CASCADE, related_name="rollup_rebuilds")
    server = models.CharField(max_length=200)
    reason = models.CharField(max_length=300)
    # Event times of the batches the server lost (the rebuild covers the whole site).
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    missed_events = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(default=django_timezone.now)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    replayed_events = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["site", "created"], name="rolluprebuild_site_created")]

    def __str__(self) -> str:
        return f"{self.site} on {self.server} ({self.created:%Y-%m-%d %H:%M})"
