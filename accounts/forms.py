"""Forms of the accounts pages. Validation of sites lives in ``accounts.sites``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from accounts import throttle
from accounts.models import Role, Scope, User, timezone_choices


class LoginForm(AuthenticationForm):
    """Django's log-in form (``username`` is the e-mail) with throttling and verified e-mail."""

    username = forms.EmailField(
        label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many failed log-ins. Wait a few minutes and try again.",
        "unverified": "Confirm your e-mail address first: follow the link we sent you.",
    }

    def clean(self) -> dict[str, Any]:
        email = (self.cleaned_data.get("username") or "").strip().lower()
        self.cleaned_data["username"] = email
        request: HttpRequest | None = self.request
        if request is not None and email and throttle.is_locked(request, email):
            raise ValidationError(self.error_messages["throttled"], code="throttled")
        try:
            return super().clean()
        except ValidationError as error:
            if request is not None and email and getattr(error, "code", None) == "invalid_login":
                throttle.record_failure(request, email)
            raise

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if not user.email_verified:
            raise ValidationError(self.error_messages["unverified"], code="unverified")


class TOTPForm(forms.Form):
    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=10,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


# The users' and invitations' e-mail column holds 254 characters; forms.EmailField allows 320.
EMAIL_LENGTH = 254


class SignupForm(forms.Form):
    email = forms.EmailField(
        label="E-mail", max_length=EMAIL_LENGTH, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )
    name = forms.CharField(label="Your name", max_length=150, required=False)
    account_name = forms.CharField(label="Company or project", max_length=200, required=False)
    password = forms.CharField(label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def __init__(self, *args: Any, invited_email: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invited_email = invited_email
        if invited_email:
            self.fields["email"].initial = invited_email
            self.fields["email"].disabled = True
            del self.fields["account_name"]

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.invited_email or self.cleaned_data["email"]).strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise ValidationError("An account with this e-mail exists already. Log in instead.")
        return email

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password = cleaned.get("password")
        if password:
            probe = User(email=cleaned.get("email", ""), name=cleaned.get("name", ""))
            try:
                password_validation.validate_password(password, probe)
            except ValidationError as error:
                self.add_error("password", error)
        return cleaned


class SiteForm(forms.Form):
    domain = forms.CharField(
        max_length=255, help_text="The host name, e.g. shop.example — no https://, no path, no port."
    )
    timezone = forms.ChoiceField(
        choices=timezone_choices, initial="UTC", help_text="Days and hours in reports follow it."
    )


class SiteSettingsForm(SiteForm):
    allowed_origins = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Origins allowed to send events from a browser, one a line (https://shop.example). Empty: any.",
    )
    public = forms.BooleanField(required=False, help_text="Anyone with the link can view the dashboard.")


class DeleteForm(forms.Form):
    confirm = forms.CharField(label="Type the name to confirm", max_length=255)

    def __init__(self, *args: Any, expected: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected

    def clean_confirm(self) -> str:
        value = str(self.cleaned_data["confirm"]).strip()
        if value != self.expected:
            raise ValidationError(f"Type {self.expected} exactly to confirm.")
        return value


class InviteForm(forms.Form):
    email = forms.EmailField(label="E-mail", max_length=EMAIL_LENGTH)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices)


class MemberForm(forms.Form):
    email = forms.EmailField()


class APIKeyForm(forms.Form):
    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, widget=forms.CheckboxSelectMultiple, initial=[Scope.STATS_READ]
    )
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, label="Expires after (days)", help_text="Empty: never."
    )
