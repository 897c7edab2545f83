from __future__ import annotations

from django.apps import AppConfig


class AnalyticsConfig(AppConfig):
    name = "analytics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Deletion clean-up and timezone-change rebuilds (the tasks load lazily).
        from analytics import receivers

        receivers.connect()

        from analytics.collector import sitecache

        # Site and account changes reach every collector process's cache.
        sitecache.connect_signals()
