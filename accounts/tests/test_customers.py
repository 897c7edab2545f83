from __future__ import annotations

import pytest

from accounts.customers import create_customer, delete_account
from accounts.models import Account, APIKey, Membership, Site
from accounts.signals import account_deleted
from accounts.sites import create_site


def test_create_customer_lowercases_the_email_and_names_the_account(db):
    user, account = create_customer("Bob@Example.COM", "a long pass phrase 9", "  Bob's Bikes ")
    assert (user.email, account.name) == ("bob@example.com", "Bob's Bikes")
    assert Membership.objects.get(user=user, account=account).role == "owner"


def test_create_customer_refuses_an_empty_account_name(db):
    with pytest.raises(ValueError, match="name"):
        create_customer("x@example.com", "a long pass phrase 9", "   ")


@pytest.mark.django_db(transaction=True)
def test_deleting_an_account_removes_its_rows_and_signals_after_commit():
    _user, account = create_customer("del@example.com", "a long pass phrase 9", "Doomed")
    sites = [create_site(account, "one.example"), create_site(account, "two.example")]
    received: list[dict] = []

    def receiver(sender, **kwargs):
        received.append({**kwargs, "left": Site.objects.filter(account_id=kwargs["account_id"]).count()})

    account_id = account.pk
    account_deleted.connect(receiver)
    try:
        delete_account(account)
    finally:
        account_deleted.disconnect(receiver)
    assert received == [
        {"signal": account_deleted, "account_id": account_id, "site_ids": sorted(s.pk for s in sites), "left": 0}
    ]
    assert not Account.objects.filter(pk=account_id).exists()
    assert not APIKey.objects.filter(account_id=account_id).exists()
    assert not Membership.objects.filter(account_id=account_id).exists()
