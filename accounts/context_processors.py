from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from accounts.access import accounts_for_user, current_account, user_role


def navigation(request: HttpRequest) -> dict[str, Any]:
    """The account switcher's choices and the current account with the user's role in it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"signup_open": settings.SIGNUP_MODE == "open"}
    account = current_account(request)
    return {
        "signup_open": settings.SIGNUP_MODE == "open",
        "nav_accounts": list(accounts_for_user(user)),
        "current_account": account,
        "current_role": user_role(user, account) if account is not None else None,
    }
