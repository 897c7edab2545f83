from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from spinnakr.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls_pages")),
    path("", include("analytics.urls")),
    path("", include("accounts.urls")),
]
