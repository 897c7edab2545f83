"""The accounts pages. Included before the dashboard's URLs so its ``/sites/<domain>/``
pattern cannot swallow ``/sites/<domain>/settings/`` or ``/sites/new/``."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import URLPattern, URLResolver, path, re_path

from accounts.views import auth, keys, sites, team

_ACCOUNT = "accounts/<uuid:public_id>/"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", auth.home, name="home"),
    path("accounts/login/", auth.SpinnakrLoginView.as_view(), name="login"),
    path("accounts/login/2fa/", auth.login_2fa, name="login-2fa"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", auth.signup, name="signup"),
    path("accounts/verify/resend/", auth.resend_verification, name="verify-resend"),
    path("accounts/verify/<str:token>/", auth.verify_email, name="verify-email"),
    path("accounts/invitations/<str:token>/", auth.invitation, name="invitation"),
    path("accounts/2fa/", auth.two_factor, name="two-factor"),
    path(
        "accounts/password_reset/",
        auth_views.PasswordResetView.as_view(
            extra_email_context={"site_url": settings.SITE_URL},
            html_email_template_name=None,
        ),
        name="password_reset",
    ),
    path("accounts/password_reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth.SpinnakrPasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("accounts/switch/", team.switch_account, name="switch-account"),
    path("accounts/team/", team.team_current, name="team-current"),
    path("accounts/keys/", keys.keys_current, name="api-keys-current"),
    path(_ACCOUNT + "team/", team.team, name="team"),
    path(_ACCOUNT + "team/role/", team.team_role, name="team-role"),
    path(_ACCOUNT + "team/remove/", team.team_remove, name="team-remove"),
    path(_ACCOUNT + "team/invitations/revoke/", team.invitation_revoke, name="invitation-revoke"),
    path(_ACCOUNT + "keys/", keys.api_keys, name="api-keys"),
    path(_ACCOUNT + "keys/<str:prefix>/revoke/", keys.api_key_revoke, name="api-key-revoke"),
    path(_ACCOUNT + "delete/", team.account_delete, name="account-delete"),
    path("sites/new/", sites.site_new, name="site-new"),
    re_path(r"^sites/(?P<domain>[^/].*?)/settings/$", sites.site_settings, name="site-settings"),
    re_path(r"^sites/(?P<domain>[^/].*?)/settings/rotate-key/$", sites.site_rotate_key, name="site-rotate-key"),
    re_path(r"^sites/(?P<domain>[^/].*?)/settings/delete/$", sites.site_delete, name="site-delete"),
    re_path(r"^sites/(?P<domain>[^/].*?)/snippet/$", sites.site_snippet, name="site-snippet"),
]
