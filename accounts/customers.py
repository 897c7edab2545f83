"""Verbs on customers: create one (user, account and owner membership), delete an account."""

from __future__ import annotations

import logging

from django.db import transaction

from accounts.models import Account, Membership, Role, User
from accounts.signals import account_deleted

logger = logging.getLogger(__name__)


def create_customer(
    email: str, password: str | None, account_name: str, *, name: str = "", email_verified: bool = True
) -> tuple[User, Account]:
    """A new user owning a new account. ``ValueError`` if the e-mail is taken."""
    email = User.objects.normalize_email(email.strip()).lower()
    account_name = account_name.strip()
    if not account_name:
        raise ValueError("the account needs a name")
    with transaction.atomic():
        if User.objects.filter(email__iexact=email).exists():
            raise ValueError(f"a user with the e-mail {email} already exists")
        user = User.objects.create_user(email, password, name=name, email_verified=email_verified)
        account = Account.objects.create(name=account_name[:200])
        Membership.objects.create(account=account, user=user, role=Role.OWNER)
    logger.info("customer.created", extra={"account_id": account.pk, "user_id": user.pk})
    return user, account


def create_account_for(user: User) -> Account:
    """A new account owned by ``user`` (who has none left)."""
    with transaction.atomic():
        account = Account.objects.create(name=f"{user.name or user.email.split('@')[0]}'s sites"[:200])
        Membership.objects.create(account=account, user=user, role=Role.OWNER)
    logger.info("customer.account_created", extra={"account_id": account.pk, "user_id": user.pk})
    return account


def delete_account(account: Account) -> None:
    """Delete the account with its sites and keys; cleanup listeners run after commit."""
    account_id = account.pk
    site_ids = sorted(account.sites.values_list("id", flat=True))
    with transaction.atomic():
        account.delete()
        transaction.on_commit(lambda: account_deleted.send(sender=Account, account_id=account_id, site_ids=site_ids))
    logger.info("account.deleted", extra={"account_id": account_id, "sites": len(site_ids)})
