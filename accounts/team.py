"""Verbs on teams: invite, accept, change a role, remove a member.

Invitation tokens are random, sent by e-mail and stored only as a SHA-256;
an invitation is good for 48 hours and can be accepted once. An account
always keeps at least one owner.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Account, Invitation, Membership, Role, User

logger = logging.getLogger(__name__)

INVITATION_LIFETIME = timedelta(hours=48)


class TeamError(ValueError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite(account: Account, email: str, role: Role, invited_by: User) -> tuple[Invitation, str]:
    """Create an invitation and e-mail its link; returns it with the plaintext token."""
    email = User.objects.normalize_email(email.strip()).lower()
    if Role(role) not in Role:
        raise TeamError("unknown role")
    if Membership.objects.filter(account=account, user__email__iexact=email).exists():
        raise TeamError(f"{email} is already a member")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        # A new invitation replaces an open one for the same address.
        Invitation.objects.filter(account=account, email=email, accepted_at__isnull=True).delete()
        invitation = Invitation.objects.create(
            account=account,
            email=email,
            role=role,
            token_hash=hash_token(token),
            invited_by=invited_by,
            expires_at=timezone.now() + INVITATION_LIFETIME,
        )
    link = f"{settings.SITE_URL}/accounts/invitations/{token}/"
    context = {"account": account, "inviter": invited_by, "link": link, "role": Role(role).label}
    send_mail(
        f"You are invited to {account.name} on Spinnakr",
        render_to_string("accounts/email/invitation.txt", context),
        None,
        [email],
    )
    logger.info("team.invited", extra={"account_id": account.pk, "role": str(role)})
    return invitation, token


def find_invitation(token: str) -> Invitation | None:
    """The open, unexpired invitation for ``token``, or ``None``."""
    invitation = Invitation.objects.select_related("account").filter(token_hash=hash_token(token)).first()
    if invitation is None or invitation.accepted_at is not None or invitation.expires_at <= timezone.now():
        return None
    return invitation


def accept(invitation: Invitation, user: User) -> Membership:
    """Make ``user`` a member; the invitation is claimed atomically, so it works once."""
    if user.email.lower() != invitation.email.lower():
        raise TeamError(f"this invitation is for {invitation.email}; log in with that address")
    now = timezone.now()
    with transaction.atomic():
        claimed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, expires_at__gt=now).update(
            accepted_at=now
        )
        if not claimed:
            raise TeamError("this invitation has expired or was already used")
        membership, created = Membership.objects.get_or_create(
            account=invitation.account, user=user, defaults={"role": invitation.role}
        )
        if not user.email_verified:
            # The link reached this address, which proves it.
            User.objects.filter(pk=user.pk).update(email_verified=True)
            user.email_verified = True
    logger.info("team.joined", extra={"account_id": invitation.account_id, "user_id": user.pk, "new": created})
    return membership


def _owners(account: Account) -> int:
    return Membership.objects.filter(account=account, role=Role.OWNER).count()


def change_role(account: Account, member: User, role: Role) -> Membership:
    with transaction.atomic():
        # Lock the account's owner rows so two demotions cannot both pass the last-owner check.
        list(Membership.objects.select_for_update().filter(account=account, role=Role.OWNER))
        membership = Membership.objects.select_for_update().filter(account=account, user=member).first()
        if membership is None:
            raise TeamError("not a member of this account")
        if membership.role == Role.OWNER and role != Role.OWNER and _owners(account) <= 1:
            raise TeamError("the last owner cannot be demoted; make someone else owner first")
        membership.role = role
        membership.save(update_fields=["role"])
    logger.info("team.role_changed", extra={"account_id": account.pk, "user_id": member.pk, "role": str(role)})
    return membership


def remove_member(account: Account, member: User) -> None:
    with transaction.atomic():
        list(Membership.objects.select_for_update().filter(account=account, role=Role.OWNER))
        membership = Membership.objects.select_for_update().filter(account=account, user=member).first()
        if membership is None:
            raise TeamError("not a member of this account")
        if membership.role == Role.OWNER and _owners(account) <= 1:
            raise TeamError("the last owner cannot leave; make someone else owner or delete the account")
        membership.delete()
    logger.info("team.removed", extra={"account_id": account.pk, "user_id": member.pk})


def revoke_invitation(account: Account, email: str) -> int:
    with transaction.atomic():
        deleted, _ = Invitation.objects.filter(account=account, email__iexact=email, accepted_at__isnull=True).delete()
    return deleted
