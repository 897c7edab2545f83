"""Dashboard pages: the sites overview, a site's live dashboard, its data endpoint and sharing.

Views stay thin: they authorise through ``analytics.dashboard.sharing.dashboard_access``
(members via ``accounts.access``; public sites and unlocked shared links
read-only), then render or call ``analytics.dashboard.queries``. Every number comes
from the query engine; the pages themselves carry no figures, the client
fetches them in one batch and then follows the live WebSocket.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import current_account, get_site_for_user, has_role, sites_for_user, user_role
from accounts.models import Role, Site
from analytics import fields
from analytics.dashboard import queries, sharing
from analytics.ingest import freshness
from analytics.query import QueryError, planner
from analytics.query.goals import create_goal, delete_goal
from spinnakr.untrusted import UntrustedInputError, loads_json

logger = logging.getLogger(__name__)

MAX_QUERY_BODY = 64 * 1024

# The top row's figures and the breakdown panels, from the field registry.
TOP_METRICS = [(name, fields.METRIC_BY_NAME[name].label) for name in fields.TOP_METRICS]
PANELS = fields.panels_data()


def _json_error(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _account_sites(request: HttpRequest) -> list[Site]:
    account = current_account(request)
    sites = sites_for_user(request.user)
    if account is not None:
        sites = sites.filter(account=account)
    return list(sites)


@login_required
@require_GET
def sites_overview(request: HttpRequest) -> HttpResponse:
    sites = _account_sites(request)
    return render(request, "analytics/overview.html", {"sites": sites, "account": current_account(request)})


@login_required
@require_GET
def sites_overview_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"sites": queries.overview(_account_sites(request))})


def _dashboard_context(access: sharing.DashboardAccess, shared_link: str = "") -> dict[str, Any]:
    site = access.site
    config = {
        "domain": site.domain,
        "timezone": site.timezone,
        "readOnly": access.read_only,
        "via": access.via,
        "queryUrl": f"/sites/{site.domain}/query",
        "socketPath": f"/ws/sites/{site.domain}/",
        "sharedLink": shared_link,
        **fields.dashboard_data(),
    }
    fresh = freshness.of_sites([site.pk]).get(site.pk)
    lag_ms = None if fresh is None else max(0, fresh.applied_ms - fresh.received_ms)
    return {
        "site": site,
        "access": access,
        "config": config,
        "metrics": TOP_METRICS,
        "panels": PANELS,
        # Its rollups server down: the figures come from SQL and lack the events that wait.
        "rollups_live": planner.rollups_live(site.pk),
        "freshness": fresh,
        "freshness_lag_ms": lag_ms,
    }


@require_GET
def site_dashboard(request: HttpRequest, domain: str) -> HttpResponse:
    access = sharing.dashboard_access(request.user, request.session, domain)
    return render(request, "analytics/dashboard.html", _dashboard_context(access))


@require_POST
def site_query(request: HttpRequest, domain: str) -> JsonResponse:
    """The dashboard's data endpoint: a batch of v2 queries (see ``analytics.dashboard.queries``)."""
    try:
        access = sharing.dashboard_access(request.user, request.session, domain)
    except Http404:
        return _json_error("not found", 404)
    if len(request.body) > MAX_QUERY_BODY:
        return _json_error(f"the body is over {MAX_QUERY_BODY} bytes", 413)
    try:
        payload = loads_json(request.body or b"null")
    except UntrustedInputError as exc:
        return _json_error(exc.message, 400)
    except (ValueError, UnicodeDecodeError):
        return _json_error("the body is not valid JSON", 400)
    try:
        answer = queries.run_batch(access.site, payload)
    except (queries.DashboardError, QueryError) as exc:
        return _json_error(str(exc), 400)
    return JsonResponse(answer)


@require_http_methods(["GET", "POST"])
def shared_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    """A shared link: asks for the password when it has one, then shows the dashboard (200, no redirect)."""
    link = sharing.link_for_slug(slug)
    if not link.has_password:
        sharing.unlock(request.session, link)
    elif request.method == "POST":
        try:
            right = sharing.check_link_password(request, link, request.POST.get("password", ""))
        except sharing.PasswordThrottled as throttled:
            context = {"link": link, "error": throttled.message}
            page = render(request, "analytics/shared_password.html", context, status=429)
            page["Retry-After"] = str(throttled.retry_after)
            return page
        if right:
            sharing.unlock(request.session, link)
        else:
            logger.info("dashboard.shared_link_bad_password", extra={"site_id": link.site_id})
            context = {"link": link, "error": "That password is not right."}
            return render(request, "analytics/shared_password.html", context, status=403)
    if not sharing.is_unlocked(request.session, link):
        return render(request, "analytics/shared_password.html", {"link": link, "error": ""})
    access = sharing.dashboard_access(request.user, request.session, link.site.domain)
    return render(request, "analytics/dashboard.html", _dashboard_context(access, shared_link=slug))


@login_required
@require_http_methods(["GET", "POST"])
def site_goals(request: HttpRequest, domain: str) -> HttpResponse:
    """List a site's goals (any member); add and delete them (admins and owners)."""
    site = get_site_for_user(request.user, domain, role=Role.VIEWER)
    can_manage = has_role(user_role(request.user, site.account), Role.ADMIN)
    error = ""
    form = {"goal_type": "event", "value": "", "display_name": ""}
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("managing goals needs the admin role")
        action = request.POST.get("action", "")
        if action == "delete":
            delete_goal(site, request.POST.get("goal_id", ""))
            return redirect(f"/sites/{site.domain}/goals/")
        form = {key: request.POST.get(key, "").strip() for key in form}
        value = form["value"]
        try:
            create_goal(
                site,
                form["goal_type"],
                event_name=value if form["goal_type"] == "event" else None,
                page_path=value if form["goal_type"] == "page" else None,
                display_name=form["display_name"] or None,
            )
        except QueryError as exc:
            error = str(exc)
        else:
            return redirect(f"/sites/{site.domain}/goals/")
    goals = site.goals.order_by("display_name")
    return render(
        request,
        "analytics/goals.html",
        {"site": site, "goals": goals, "can_manage": can_manage, "error": error, "form": form},
        status=400 if error else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def site_sharing(request: HttpRequest, domain: str) -> HttpResponse:
    """Make the dashboard public, create or delete shared links (admins and owners)."""
    site = get_site_for_user(request.user, domain, role=Role.ADMIN)
    created_url = ""
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "public":
            sharing.set_site_public(site, request.POST.get("public") == "on")
        elif action == "create":
            link = sharing.create_shared_link(
                site,
                request.POST.get("name", ""),
                request.POST.get("password") or None,
                request.user,  # type: ignore[arg-type]
            )
            created_url = request.build_absolute_uri(f"/share/{link.slug}/")
        elif action == "delete":
            sharing.delete_shared_link(site, request.POST.get("slug", ""))
        if not created_url:
            return redirect(f"/sites/{site.domain}/sharing/")
    links = site.shared_links.order_by("-created")
    return render(
        request,
        "analytics/sharing.html",
        {"site": site, "links": links, "created_url": created_url},
    )
