"""The API keys page: create (the secret is shown once) and revoke."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts.access import current_account, get_account_for_user
from accounts.apikeys import create_api_key, revoke_api_key
from accounts.forms import APIKeyForm
from accounts.models import APIKey, Role


@login_required
def keys_current(request: HttpRequest) -> HttpResponse:
    account = current_account(request)
    if account is None:
        raise Http404("no account")
    return redirect("api-keys", public_id=account.public_id)


@login_required
@never_cache
def api_keys(request: HttpRequest, public_id: str) -> HttpResponse:
    account = get_account_for_user(request.user, public_id, role=Role.ADMIN)
    form = APIKeyForm(request.POST or None)
    created_secret = None
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data.get("expires_in_days")
        try:
            _key, created_secret = create_api_key(
                account,
                form.cleaned_data["name"],
                form.cleaned_data["scopes"],
                created_by=request.user,  # type: ignore[arg-type]
                expires_at=timezone.now() + timedelta(days=days) if days else None,
            )
        except ValueError as error:
            form.add_error(None, str(error))
        else:
            form = APIKeyForm()
    keys = APIKey.objects.filter(account=account).select_related("created_by").order_by("-created")
    context = {"account": account, "form": form, "keys": keys, "created_secret": created_secret, "now": timezone.now()}
    return render(request, "accounts/api_keys.html", context)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, public_id: str, prefix: str) -> HttpResponse:
    account = get_account_for_user(request.user, public_id, role=Role.ADMIN)
    key = APIKey.objects.filter(account=account, prefix=prefix).first()
    if key is None:
        raise Http404("no such key")
    revoke_api_key(key)
    messages.success(request, f"The key {key.name} is revoked; requests with it now get 401.")
    return redirect("api-keys", public_id=account.public_id)
