"""Sign-up with e-mail verification, log-in (with optional TOTP), two-factor settings."""

from __future__ import annotations

import base64
import logging
import time
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, PasswordResetConfirmView
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_otp import login as otp_login

from accounts import throttle, twofactor
from accounts.access import set_current_account
from accounts.customers import create_customer
from accounts.forms import LoginForm, SignupForm, TOTPForm
from accounts.models import User
from accounts.team import TeamError, accept, find_invitation
from accounts.verification import send_verification, user_for_token

logger = logging.getLogger(__name__)

PENDING_USER = "spinnakr_2fa_user"
PENDING_BACKEND = "spinnakr_2fa_backend"
PENDING_NEXT = "spinnakr_2fa_next"
PENDING_SINCE = "spinnakr_2fa_since"
# Seconds between a correct password and the code before the log-in starts over.
PENDING_LIFETIME = 300


def home(request: HttpRequest) -> HttpResponse:
    return redirect("/sites/" if request.user.is_authenticated else settings.LOGIN_URL)


class SpinnakrLoginView(LoginView):
    form_class = LoginForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: LoginForm) -> HttpResponse:  # type: ignore[override]
        user = form.get_user()
        if twofactor.has_2fa(user):
            # The password was right; the session stays anonymous until the code is too.
            # Failures are not reset here, so re-entering the password buys no extra code guesses.
            self.request.session.cycle_key()
            self.request.session[PENDING_USER] = user.pk
            self.request.session[PENDING_SINCE] = int(time.time())
            self.request.session[PENDING_BACKEND] = getattr(user, "backend", settings.AUTHENTICATION_BACKENDS[0])
            self.request.session[PENDING_NEXT] = self.get_success_url()
            return redirect("login-2fa")
        throttle.reset_account(user.email)
        return super().form_valid(form)


class SpinnakrPasswordResetConfirmView(PasswordResetConfirmView):
    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        # The reset link reached the address, which proves it, as the verification link would.
        User.objects.filter(pk=form.user.pk, email_verified=False).update(email_verified=True)
        return response


@never_cache
def login_2fa(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(PENDING_USER)
    since = request.session.get(PENDING_SINCE)
    fresh = isinstance(since, int) and time.time() - since < PENDING_LIFETIME
    user = User.objects.filter(pk=pending, is_active=True).first() if isinstance(pending, int) and fresh else None
    device = twofactor.confirmed_device(user) if user is not None else None
    if user is None or device is None:
        return redirect(settings.LOGIN_URL)
    form = TOTPForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if throttle.is_locked(request, user.email):
            form.add_error("code", "Too many failed attempts. Wait a few minutes and try again.")
        elif twofactor.verify(device, form.cleaned_data["code"]):
            next_url = request.session.get(PENDING_NEXT) or settings.LOGIN_REDIRECT_URL
            backend = request.session.get(PENDING_BACKEND)
            for key in (PENDING_USER, PENDING_BACKEND, PENDING_NEXT, PENDING_SINCE):
                request.session.pop(key, None)
            login(request, user, backend=backend)
            otp_login(request, device)
            throttle.reset_account(user.email)
            return redirect(next_url)
        else:
            throttle.record_failure(request, user.email)
            form.add_error("code", "That code is not valid. Check your app's clock and try the current code.")
    return render(request, "registration/login_2fa.html", {"form": form})


@never_cache
def signup(request: HttpRequest) -> HttpResponseBase:
    if request.user.is_authenticated:
        return redirect("/sites/")
    if settings.SIGNUP_MODE != "open":
        return render(request, "registration/signup_closed.html", status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and not throttle.allow_signup(request):
        form.add_error(None, "Too many sign-ups from your network. Try again in an hour.")
    elif request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user, _account = create_customer(
                data["email"],
                data["password"],
                data.get("account_name") or f"{data.get('name') or data['email'].split('@')[0]}'s sites",
                name=data.get("name", ""),
                email_verified=False,
            )
        except ValueError as error:
            form.add_error("email", str(error))
        else:
            send_verification(user)
            return render(request, "registration/signup_done.html", {"email": user.email})
    return render(request, "registration/signup.html", {"form": form})


@require_POST
def resend_verification(request: HttpRequest) -> HttpResponse:
    email = str(request.POST.get("email", "")).strip().lower()
    user = User.objects.filter(email__iexact=email, email_verified=False, is_active=True).first()
    if user is not None and not throttle.is_locked(request, email):
        throttle.record_failure(request, email)  # bounds how often one address can be mailed
        send_verification(user)
    # The same answer either way, so the page does not reveal who has an account.
    return render(request, "registration/signup_done.html", {"email": email})


@never_cache
def verify_email(request: HttpRequest, token: str) -> HttpResponse:
    user = user_for_token(token)
    if user is None:
        return render(request, "registration/verify_failed.html", status=400)
    if not user.email_verified:
        User.objects.filter(pk=user.pk).update(email_verified=True)
        user.email_verified = True
        logger.info("signup.verified", extra={"user_id": user.pk})
    if twofactor.has_2fa(user):
        messages.success(request, "Your e-mail address is confirmed. Log in to continue.")
        return redirect(settings.LOGIN_URL)
    login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    messages.success(request, "Your e-mail address is confirmed. Add your first site.")
    return redirect("site-new")


@never_cache
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """Accept an invitation: join as the logged-in user, or sign up with the invited address."""
    found = find_invitation(token)
    if found is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    context: dict[str, Any] = {"invitation": found}
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                accept(found, request.user)
            except TeamError as error:
                context["error"] = str(error)
            else:
                set_current_account(request, found.account)
                messages.success(request, f"You joined {found.account.name}.")
                return redirect("/sites/")
        return render(request, "accounts/invitation.html", context)
    if User.objects.filter(email__iexact=found.email).exists():
        return redirect(f"{settings.LOGIN_URL}?next=/accounts/invitations/{token}/")
    form = SignupForm(request.POST or None, invited_email=found.email)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = User.objects.create_user(
                found.email, form.cleaned_data["password"], name=form.cleaned_data.get("name", ""), email_verified=True
            )
            try:
                accept(found, user)
            except TeamError as error:
                transaction.set_rollback(True)
                context["error"] = str(error)
                context["form"] = form
                return render(request, "accounts/invitation.html", context)
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        messages.success(request, f"Welcome to {found.account.name}.")
        return redirect("/sites/")
    context["form"] = form
    return render(request, "accounts/invitation.html", context)


@login_required
@never_cache
def two_factor(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]
    if twofactor.has_2fa(user):
        if request.method == "POST" and request.POST.get("action") == "disable":
            form = TOTPForm(request.POST)
            device = twofactor.confirmed_device(user)
            if form.is_valid() and device is not None and twofactor.verify(device, form.cleaned_data["code"]):
                twofactor.disable(user)
                messages.success(request, "Two-factor authentication is off.")
                return redirect("two-factor")
            messages.error(request, "That code is not valid; two-factor authentication stays on.")
        return render(request, "accounts/two_factor.html", {"enabled": True, "form": TOTPForm()})
    device = twofactor.pending_device(user)
    form = TOTPForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if twofactor.enable(user, device, form.cleaned_data["code"]):
            otp_login(request, device)
            messages.success(request, "Two-factor authentication is on. You will need a code at every log-in.")
            return redirect("two-factor")
        form.add_error("code", "That code is not valid. Scan the code again and enter the current number.")
    context = {"enabled": False, "form": form, "qr": twofactor.qr_svg_data_uri(device), "secret": device_secret(device)}
    return render(request, "accounts/two_factor.html", context)


def device_secret(device: Any) -> str:
    """The base32 secret for typing into an app by hand, in groups of four."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
