from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from accounts.urls import PREFIX as SITES_API_PREFIX
from spinnakr.health import healthz
from spinnakr.metrics_view import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls_pages")),
    path("", include("analytics.urls")),
    # Plausible's Sites API, disjoint from every other route (see accounts.urls).
    re_path(SITES_API_PREFIX, include("accounts.urls")),
]
