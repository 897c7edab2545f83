from __future__ import annotations

from django.urls import URLPattern, URLResolver, re_path

from accounts import api

# API paths answer with or without a trailing slash, never with a redirect.
urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^api/v1/sites/?$", api.SiteListView.as_view(), name="api-sites"),
    re_path(r"^api/v1/sites/teams/?$", api.TeamListView.as_view(), name="api-teams"),
    re_path(r"^api/v1/sites/(?P<domain>[^/].*?)/?$", api.SiteDetailView.as_view(), name="api-site"),
]
