"""The raw event store: one row per accepted event, kept for the plan's retention.

``analytics_event`` is a PostgreSQL table partitioned by month on ``timestamp``
(created by migration 0001, partitions by ``analytics.store``). Its primary key
``(site_id, timestamp, event_id)`` contains the partition key, so re-inserting a
batch with ``ON CONFLICT DO NOTHING`` adds nothing; every index leads with the
site. Django does not manage the table; this model is for reads and the admin.
"""

from __future__ import annotations

from django.db import models


class Event(models.Model):
    # Django needs a single-column primary key; the table's real key is
    # (site_id, timestamp, event_id). event_id is unique per site in practice.
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
