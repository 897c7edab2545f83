from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    # The Stats API, goals, realtime, exports and the API schema (query stream).
    path("", include("analytics.api.urls")),
]
