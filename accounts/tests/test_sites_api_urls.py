"""Plausible's Sites API and the v1 Stats API resolve to their views whatever the order of the includes."""

from __future__ import annotations

from types import ModuleType

import pytest
from django.urls import include, re_path, resolve

from accounts import api
from accounts.urls import PREFIX
from analytics.api import sites, stats

EXPECTED = {
    "/api/v1/sites": api.SiteListView,
    "/api/v1/sites/": api.SiteListView,
    "/api/v1/sites/teams": api.TeamListView,
    "/api/v1/sites/goals": sites.GoalsView,
    "/api/v1/sites/goals/": sites.GoalsView,
    "/api/v1/sites/goals/42": sites.GoalDetailView,
    "/api/v1/sites/goals/42/": sites.GoalDetailView,
    "/api/v1/sites/shop.example": api.SiteDetailView,
    "/api/v1/sites/shop.example/": api.SiteDetailView,
    "/api/v1/sites/shop.example/blog": api.SiteDetailView,
    "/api/v1/sites/goalkeeper.example": api.SiteDetailView,
    "/api/v1/sites/teamwork.example/": api.SiteDetailView,
    "/api/v1/sites/shop.example/realtime": sites.SiteRealtimeView,
    "/api/v1/sites/shop.example/blog/realtime/": sites.SiteRealtimeView,
    "/api/v1/sites/shop.example/export": sites.ExportView,
    "/api/v1/sites/shop.example/export/": sites.ExportView,
    "/api/v1/stats/aggregate": stats.AggregateView,
    "/api/v1/stats/timeseries/": stats.TimeseriesView,
    "/api/v1/stats/breakdown": stats.BreakdownView,
    "/api/v1/stats/realtime/visitors": stats.RealtimeVisitorsView,
    "/api/v2/query": stats.QueryView,
}


def _urlconf(sites_first: bool) -> ModuleType:
    includes = [re_path(r"", include("analytics.api.urls")), re_path(PREFIX, include("accounts.urls"))]
    module = ModuleType(f"tenancy_urlconf_sites_first_{sites_first}")
    module.urlpatterns = list(reversed(includes)) if sites_first else includes  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize("sites_first", [False, True])
def test_each_api_url_resolves_to_its_view_in_either_include_order(sites_first: bool) -> None:
    urlconf = _urlconf(sites_first)
    resolved = {url: resolve(url, urlconf=urlconf).func.view_class for url in EXPECTED}  # type: ignore[arg-type, attr-defined]
    assert resolved == EXPECTED


def test_the_site_detail_route_keeps_the_whole_domain() -> None:
    kwargs = [resolve(url).kwargs for url in ("/api/v1/sites/shop.example/blog/", "/api/v1/sites/a.example/realtime")]
    assert kwargs == [{"domain": "shop.example/blog"}, {"domain": "a.example"}]
