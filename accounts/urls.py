"""Plausible's Sites API: every route under ``/api/v1/sites``, in one include.

``spinnakr.urls`` mounts it at ``^api/v1/sites``. The patterns are disjoint (a
domain is never ``goals`` or ``teams`` and never ends in ``/realtime`` or
``/export``), so no URL depends on the order of the patterns or of the
includes. Every path answers with or without a trailing slash, never with a
redirect.
"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, re_path

from accounts import api
from analytics.api import sites

PREFIX = r"^api/v1/sites"
# A domain may carry a path ("example.com/blog"), but is never one of the fixed names below.
# The assertions stay inside the group, which route walkers (simplify_regex) read as one parameter.
_NOT_FIXED = r"(?!(?:goals|teams)(?:/|$))"
DOMAIN = rf"(?P<domain>{_NOT_FIXED}[^/].*?)"
SITE_DOMAIN = rf"(?P<domain>{_NOT_FIXED}[^/].*?(?<!/realtime)(?<!/realtime/)(?<!/export)(?<!/export/))"

urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^/?$", api.SiteListView.as_view(), name="api-sites"),
    re_path(r"^/teams/?$", api.TeamListView.as_view(), name="api-teams"),
    re_path(r"^/goals/?$", sites.GoalsView.as_view(), name="api-goals"),
    re_path(r"^/goals/(?P<goal_id>[^/]+)/?$", sites.GoalDetailView.as_view(), name="api-goal"),
    re_path(rf"^/{DOMAIN}/realtime/?$", sites.SiteRealtimeView.as_view(), name="api-site-realtime"),
    re_path(rf"^/{DOMAIN}/export/?$", sites.ExportView.as_view(), name="api-site-export"),
    re_path(rf"^/{SITE_DOMAIN}/?$", api.SiteDetailView.as_view(), name="api-site"),
]
