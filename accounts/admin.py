"""The Django admin for staff: customers, sites, API keys (never the secret), users, invitations.

Changes to sites and accounts go through the same verbs as the pages and the
API (``accounts.sites``, ``accounts.customers``), so the collector's cache and
the clean-up receivers hear of them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timesince import timesince
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin as OTPTOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.apikeys import revoke_api_key
from accounts.customers import delete_account
from accounts.models import Account, APIKey, Invitation, Membership, Site, User
from accounts.sites import (
    SiteError,
    check_domain_free,
    clean_domain,
    clean_origins,
    clean_timezone,
    create_site,
    delete_site,
    rotate_site_key,
    update_site,
)
from analytics.ingest import freshness
from analytics.ingest.quota import events_this_month


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user", "account"]
    fields = ["user", "role", "created"]
    readonly_fields = ["created"]


class SiteInline(admin.TabularInline):
    """Read-only: sites change through the site admin, which uses the site verbs."""

    model = Site
    extra = 0
    fields = ["domain", "timezone", "public", "created"]
    readonly_fields = ["domain", "timezone", "public", "created"]
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "plan", "suspended", "monthly_event_quota", "events_this_month", "site_count", "created"]
    list_filter = ["plan", "suspended"]
    search_fields = ["name", "=public_id", "memberships__user__email", "sites__domain"]
    readonly_fields = ["public_id", "created", "events_this_month"]
    inlines = [MembershipInline, SiteInline]
    actions = ["suspend", "unsuspend"]
    ordering = ["name"]

    @admin.display(description="Events this month")
    def events_this_month(self, obj: Account) -> int:
        return events_this_month(obj.pk)

    @admin.display(description="Sites")
    def site_count(self, obj: Account) -> int:
        return obj.sites.count()

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Account], search_term: str) -> Any:
        results, _ = super().get_search_results(request, queryset, search_term)
        return results.distinct(), False

    def _set_suspended(self, request: HttpRequest, queryset: QuerySet[Account], value: bool) -> None:
        changed = 0
        for account in queryset.filter(suspended=not value):
            # save() (not update()) so post_save reaches the collector's site cache.
            account.suspended = value
            account.save(update_fields=["suspended"])
            changed += 1
        state = "suspended" if value else "reinstated"
        self.message_user(request, f"{changed} account(s) {state}.", messages.SUCCESS)

    @admin.action(description="Suspend the selected accounts (their events are refused)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        self._set_suspended(request, queryset, True)

    @admin.action(description="Unsuspend the selected accounts")
    def unsuspend(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        self._set_suspended(request, queryset, False)

    def delete_model(self, request: HttpRequest, obj: Account) -> None:
        delete_account(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            delete_account(account)


class SiteAdminForm(forms.ModelForm):
    class Meta:
        model = Site
        fields = ["account", "domain", "timezone", "allowed_origins", "public"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        try:
            # As in update_site: only a rename is checked, so older names stay editable.
            if "domain" in cleaned and cleaned["domain"] != self.instance.domain:
                cleaned["domain"] = clean_domain(cleaned["domain"])
                account = self.instance.account if self.instance.pk else cleaned.get("account")
                if account is not None:
                    check_domain_free(cleaned["domain"], account.pk, self.instance.pk)
            if "timezone" in cleaned:
                cleaned["timezone"] = clean_timezone(cleaned["timezone"])
            cleaned["allowed_origins"] = clean_origins(cleaned.get("allowed_origins") or [])
        except SiteError as error:
            self.add_error(error.field if error.field in self.fields else None, error.message)
        return cleaned


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    form = SiteAdminForm
    list_display = ["domain", "account", "timezone", "public", "created", "last_applied", "ingest_lag"]
    list_filter = ["public", "account__plan"]
    search_fields = ["domain", "account__name"]
    readonly_fields = ["site_key", "created", "updated", "last_applied", "ingest_lag"]
    autocomplete_fields = ["account"]
    actions = ["rotate_keys"]
    ordering = ["domain"]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        # The page's sites' freshness in one round trip, not one per row.
        changelist = super().get_changelist_instance(request)
        found = freshness.of_sites(site.pk for site in changelist.result_list)
        for site in changelist.result_list:
            site._freshness = found.get(site.pk)
        return changelist

    def _freshness(self, obj: Site) -> freshness.Freshness | None:
        if not hasattr(obj, "_freshness"):
            obj._freshness = freshness.of_sites([obj.pk]).get(obj.pk)  # type: ignore[attr-defined]
        return obj._freshness  # type: ignore[attr-defined]

    @admin.display(description="last event applied")
    def last_applied(self, obj: Site) -> str:
        found = self._freshness(obj) if obj.pk else None
        if found is None:
            return "never"
        return f"{timesince(found.applied)} ago ({found.applied:%Y-%m-%d %H:%M:%S} UTC)"

    @admin.display(description="ingestion lag")
    def ingest_lag(self, obj: Site) -> str:
        found = self._freshness(obj) if obj.pk else None
        return "-" if found is None else f"{found.lag_seconds:.2f} s"

    def get_readonly_fields(self, request: HttpRequest, obj: Site | None = None) -> list[str]:
        # A site stays in its account; moving tenants is not an admin click.
        return [*self.readonly_fields, "account"] if obj is not None else list(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Site, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        try:
            if change:
                update_site(
                    obj,
                    domain=data["domain"],
                    timezone=data["timezone"],
                    allowed_origins=data["allowed_origins"],
                    public=bool(data["public"]),
                )
            else:
                created = create_site(
                    data["account"],
                    data["domain"],
                    data["timezone"],
                    allowed_origins=data["allowed_origins"],
                    public=bool(data["public"]),
                )
                obj.pk = created.pk
                obj.site_key = created.site_key
        except SiteError as error:
            # Raced with another change after the form validated.
            self.message_user(request, error.message, messages.ERROR)

    def delete_model(self, request: HttpRequest, obj: Site) -> None:
        delete_site(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        for site in queryset:
            delete_site(site)

    @admin.action(description="Rotate the site keys (old tags stop counting)")
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[Site]) -> None:
        for site in queryset:
            rotate_site_key(site)
        self.message_user(request, f"{queryset.count()} site key(s) rotated.", messages.SUCCESS)


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "display_prefix", "account", "scopes", "last_used", "expires_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "account__name"]
    fields = [
        "name",
        "display_prefix",
        "account",
        "scopes",
        "created_by",
        "created",
        "last_used",
        "expires_at",
        "revoked_at",
    ]
    readonly_fields = ["display_prefix", "account", "scopes", "created_by", "created", "last_used", "revoked_at"]
    actions = ["revoke"]
    ordering = ["-created"]

    @admin.display(description="Key")
    def display_prefix(self, obj: APIKey) -> str:
        return f"spk_{obj.prefix}_…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A key's secret must reach its owner once; the API keys page and create_api_key do that.
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        for key in queryset.filter(revoked_at__isnull=True):
            revoke_api_key(key)
        self.message_user(request, "Keys revoked.", messages.SUCCESS)


class UserCreationForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserCreationForm
    list_display = ["email", "name", "email_verified", "is_active", "is_staff", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "email_verified"]
    search_fields = ["email", "name"]
    ordering = ["email"]
    readonly_fields = ["date_joined", "last_login"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Person", {"fields": ("name", "email_verified")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    inlines = [MembershipInline]


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "account", "role", "created", "expires_at", "accepted_at"]
    list_filter = ["role"]
    search_fields = ["email", "account__name"]
    fields = ["email", "account", "role", "invited_by", "created", "expires_at", "accepted_at"]
    readonly_fields = ["email", "account", "role", "invited_by", "created", "expires_at", "accepted_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Invitations are sent from the team page, which mails the single-use link.
        return False


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """Staff log in through the service's log-in page, so throttling and 2FA apply to them too."""
    target = request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("admin:index")
    if request.user.is_authenticated:
        if not request.user.is_staff:
            raise PermissionDenied("the admin is for Spinnakr staff")
        return redirect(target)
    return redirect(f"{settings.LOGIN_URL}?{urlencode({REDIRECT_FIELD_NAME: target})}")


admin.site.login = admin_login  # type: ignore[method-assign]


class TOTPDeviceAdmin(OTPTOTPDeviceAdmin):
    """django-otp's device admin, but an unknown device's config and QR code pages are 404, not 500."""

    def config_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        get_object_or_404(TOTPDevice, pk=pk)
        return super().config_view(request, pk)

    def qrcode_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        get_object_or_404(TOTPDevice, pk=pk)
        return super().qrcode_view(request, pk)


# Importing django-otp's admin module registered its own; this one takes its place.
admin.site.unregister(TOTPDevice)
admin.site.register(TOTPDevice, TOTPDeviceAdmin)
