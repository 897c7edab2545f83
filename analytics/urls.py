from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from analytics.dashboard import views

# A site's domain may carry a path prefix ("example.com/blog"), hence <path:>;
# the more specific routes come first.
urlpatterns: list[URLPattern | URLResolver] = [
    # The Stats API, goals, realtime, exports and the API schema.
    path("", include("analytics.api.urls")),
    path("sites/", views.sites_overview, name="sites-overview"),
    path("sites/summary.json", views.sites_overview_data, name="sites-overview-data"),
    path("sites/<path:domain>/query", views.site_query, name="site-query"),
    path("sites/<path:domain>/sharing/", views.site_sharing, name="site-sharing"),
    path("sites/<path:domain>/goals/", views.site_goals, name="site-goals"),
    path("sites/<path:domain>/", views.site_dashboard, name="site-dashboard"),
    path("share/<str:slug>/", views.shared_dashboard, name="shared-dashboard"),
]
