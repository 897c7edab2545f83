"""Admin for goals and per-account API rate limits."""

from __future__ import annotations

from django.contrib import admin

from analytics.models import APIRateLimit, Goal


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
