"""Signed, expiring e-mail verification links (no table: the signature is the proof)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.template.loader import render_to_string

from accounts.models import User

logger = logging.getLogger(__name__)

SALT = "spinnakr.accounts.verify-email"
MAX_AGE = 3 * 24 * 3600


def make_token(user: User) -> str:
    return signing.dumps({"u": user.pk, "e": user.email}, salt=SALT)


def user_for_token(token: str) -> User | None:
    try:
        data = signing.loads(token, salt=SALT, max_age=MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    # The e-mail must still match: changing it invalidates older links.
    user_id, email = data.get("u"), data.get("e")
    if not isinstance(user_id, int) or not isinstance(email, str):
        return None
    return User.objects.filter(pk=user_id, email=email, is_active=True).first()


def send_verification(user: User) -> None:
    link = f"{settings.SITE_URL}/accounts/verify/{make_token(user)}/"
    send_mail(
        "Confirm your e-mail address for Spinnakr",
        render_to_string("accounts/email/verify.txt", {"user": user, "link": link}),
        None,
        [user.email],
    )
    logger.info("signup.verification_sent", extra={"user_id": user.pk})
