"""Admin for goals, per-account API rate limits and the rollup rebuilds the service started itself."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from analytics.models import APIRateLimit, Goal, RollupRebuild


@admin.register(Goal)
class GoalAdmin(admin.ModelAdmin):
    list_display = ("display_name", "site", "event_name", "page_path", "created")
    list_select_related = ("site",)
    search_fields = ("display_name", "site__domain", "event_name", "page_path")
    raw_id_fields = ("site",)


@admin.register(APIRateLimit)
class APIRateLimitAdmin(admin.ModelAdmin):
    list_display = ("account", "requests_per_hour")
    list_select_related = ("account",)
    search_fields = ("account__name",)
    raw_id_fields = ("account",)


@admin.register(RollupRebuild)
class RollupRebuildAdmin(admin.ModelAdmin):
    """Read-only: the service records these itself (``analytics.ingest.failover``)."""

    list_display = ("site", "server", "created", "started", "finished", "missed_events", "replayed_events", "error")
    list_select_related = ("site",)
    list_filter = ("server",)
    search_fields = ("site__domain", "server")
    date_hierarchy = "created"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RollupRebuild | None = None) -> bool:
        return False
