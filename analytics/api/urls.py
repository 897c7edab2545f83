"""API routes but the Sites API (``accounts.urls``, all of ``/api/v1/sites``).

Every path answers with or without a trailing slash, never with a redirect.
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from analytics.api import stats

urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^api/v2/query/?$", stats.QueryView.as_view(), name="api-v2-query"),
    re_path(r"^api/v1/stats/realtime/visitors/?$", stats.RealtimeVisitorsView.as_view(), name="api-v1-realtime"),
    re_path(r"^api/v1/stats/aggregate/?$", stats.AggregateView.as_view(), name="api-v1-aggregate"),
    re_path(r"^api/v1/stats/timeseries/?$", stats.TimeseriesView.as_view(), name="api-v1-timeseries"),
    re_path(r"^api/v1/stats/breakdown/?$", stats.BreakdownView.as_view(), name="api-v1-breakdown"),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="api-schema"),
    re_path(r"^api/docs/?$", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^api/redoc/?$", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
]
