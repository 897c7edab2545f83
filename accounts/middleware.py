"""Content-Security-Policy for every Django response (production profile by default).

The policy allows the service's own origin only: no inline script or style, no
third-party hosts. The API documentation pages (drf-spectacular's Swagger UI
and Redoc templates carry inline ``<script>``/``<style>`` and Redoc starts a
``blob:`` worker) get a relaxed policy of their own; a view may also set its
own header, which is then left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse

DOCS_PATHS = ("/api/docs", "/api/redoc")


def build_policy(site_url: str, *, docs: bool = False) -> str:
    parts = urlsplit(site_url)
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    inline = " 'unsafe-inline'" if docs else ""
    directives = [
        "default-src 'self'",
        f"script-src 'self'{inline}",
        f"style-src 'self'{inline}",
        "img-src 'self' data:",
        "font-src 'self'",
        # 'self' covers same-origin WebSockets in CSP 3; the explicit origin covers older browsers.
        f"connect-src 'self' {ws_scheme}://{parts.netloc}",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    if docs:
        directives.append("worker-src 'self' blob:")
    return "; ".join(directives)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = build_policy(settings.SITE_URL)
        self.docs_policy = build_policy(settings.SITE_URL, docs=True)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.CSP_ENABLED and "Content-Security-Policy" not in response:
            docs = request.path.startswith(DOCS_PATHS)
            response["Content-Security-Policy"] = self.docs_policy if docs else self.policy
        return response
