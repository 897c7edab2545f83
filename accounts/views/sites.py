"""Site pages: add a site, its settings (rename, time zone, origins, key, delete), the snippet."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.access import current_account, get_account_for_user, get_site_for_user, has_role, request_user, user_role
from accounts.customers import create_account_for
from accounts.forms import DeleteForm, SiteForm, SiteSettingsForm
from accounts.models import Account, Membership, Role, Site
from accounts.sites import SiteError, create_site, delete_site, rotate_site_key, update_site


def _managed_accounts(request: HttpRequest) -> list[Account]:
    memberships = Membership.objects.filter(user=request_user(request), role__in=[Role.ADMIN, Role.OWNER])
    return [m.account for m in memberships.select_related("account").order_by("account__name")]


@login_required
def site_new(request: HttpRequest) -> HttpResponse:
    managed = _managed_accounts(request)
    user = request_user(request)
    if not managed and not Membership.objects.filter(user=user).exists():
        # Someone who left (or lost) every account starts a new one of their own.
        if request.method != "POST":
            return render(request, "accounts/site_new.html", {"form": SiteForm(), "account": None, "managed": []})
        managed = [create_account_for(user)]
    if not managed:
        raise PermissionDenied("only admins and owners add sites")
    current = current_account(request)
    account = current if current is not None and has_role(user_role(request.user, current), Role.ADMIN) else managed[0]
    if request.method == "POST" and request.POST.get("account"):
        account = get_account_for_user(request.user, str(request.POST["account"]), role=Role.ADMIN)
    form = SiteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            site = create_site(account, form.cleaned_data["domain"], form.cleaned_data["timezone"])
        except SiteError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"{site.domain} is ready. Paste this tag into your pages.")
            return redirect("site-snippet", domain=site.domain)
    return render(request, "accounts/site_new.html", {"form": form, "account": account, "managed": managed})


def snippet_tag(site: Site) -> str:
    base = settings.SITE_URL
    return f'<script defer data-key="{site.site_key}" data-api="{base}/api/event" src="{base}/js/script.js"></script>'


@login_required
def site_snippet(request: HttpRequest, domain: str) -> HttpResponse:
    site = get_site_for_user(request.user, domain)
    role = user_role(request.user, site.account)
    context = {"site": site, "snippet": snippet_tag(site), "can_manage": has_role(role, Role.ADMIN)}
    return render(request, "accounts/site_snippet.html", context)


@login_required
def site_settings(request: HttpRequest, domain: str) -> HttpResponse:
    site = get_site_for_user(request.user, domain, role=Role.ADMIN)
    initial = {
        "domain": site.domain,
        "timezone": site.timezone,
        "allowed_origins": "\n".join(site.allowed_origins),
        "public": site.public,
    }
    form = SiteSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            update_site(
                site,
                domain=form.cleaned_data["domain"],
                timezone=form.cleaned_data["timezone"],
                allowed_origins=form.cleaned_data["allowed_origins"],
                public=bool(form.cleaned_data["public"]),
            )
        except SiteError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, "Settings saved.")
            return redirect("site-settings", domain=site.domain)
    context = {
        "site": site,
        "form": form,
        "delete_form": DeleteForm(expected=site.domain),
        "snippet": snippet_tag(site),
    }
    return render(request, "accounts/site_settings.html", context)


@login_required
@require_POST
def site_rotate_key(request: HttpRequest, domain: str) -> HttpResponse:
    site = get_site_for_user(request.user, domain, role=Role.ADMIN)
    rotate_site_key(site)
    messages.success(
        request, "A new site key is live. Update the tag on your pages: the old key is refused from now on."
    )
    return redirect("site-settings", domain=site.domain)


@login_required
@require_POST
def site_delete(request: HttpRequest, domain: str) -> HttpResponse:
    site = get_site_for_user(request.user, domain, role=Role.ADMIN)
    form = DeleteForm(request.POST, expected=site.domain)
    if not form.is_valid():
        context = {
            "site": site,
            "form": SiteSettingsForm(
                initial={
                    "domain": site.domain,
                    "timezone": site.timezone,
                    "allowed_origins": "\n".join(site.allowed_origins),
                    "public": site.public,
                }
            ),
            "delete_form": form,
            "snippet": snippet_tag(site),
        }
        return render(request, "accounts/site_settings.html", context, status=400)
    delete_site(site)
    messages.success(request, f"{domain} and all its statistics were deleted.")
    return redirect("/sites/")
