from __future__ import annotations

import re
from datetime import timedelta

import time_machine
from django.core import mail
from django.utils import timezone

from accounts.models import Account, Invitation, Membership, Role, User
from accounts.team import hash_token


def invite(client, account, email="newbie@example.org", role="admin"):
    response = client.post(f"/accounts/{account.public_id}/team/", {"email": email, "role": role})
    assert response.status_code == 302
    match = re.search(r"/accounts/invitations/[^\s/]+/", str(mail.outbox[-1].body))
    assert match
    return match.group(0)


def test_the_team_page_lists_members_for_a_viewer(viewer_client, account, owner):
    response = viewer_client.get(f"/accounts/{account.public_id}/team/")
    assert response.status_code == 200
    assert owner.email in response.content.decode()


def test_the_team_shortcut_opens_the_current_account(owner_client, account):
    assert owner_client.get("/accounts/team/")["Location"] == f"/accounts/{account.public_id}/team/"


def test_an_outsider_gets_404_on_every_team_page(outsider_client, account, owner):
    base = f"/accounts/{account.public_id}"
    responses = [
        outsider_client.get(f"{base}/team/"),
        outsider_client.post(f"{base}/team/", {"email": "x@example.org", "role": "owner"}),
        outsider_client.post(f"{base}/team/role/", {"email": owner.email, "role": "viewer"}),
        outsider_client.post(f"{base}/team/remove/", {"email": owner.email}),
        outsider_client.post(f"{base}/team/invitations/revoke/", {"email": "x@example.org"}),
        outsider_client.get(f"{base}/delete/"),
        outsider_client.post("/accounts/switch/", {"account": str(account.public_id)}),
    ]
    assert [r.status_code for r in responses] == [404] * 7
    assert Membership.objects.get(account=account, user=owner).role == Role.OWNER


def test_admins_and_viewers_cannot_manage_members(admin_client_, account, viewer):
    base = f"/accounts/{account.public_id}"
    responses = [
        admin_client_.post(f"{base}/team/", {"email": "x@example.org", "role": "owner"}),
        admin_client_.post(f"{base}/team/role/", {"email": viewer.email, "role": "owner"}),
        admin_client_.post(f"{base}/team/remove/", {"email": viewer.email}),
        admin_client_.get(f"{base}/delete/"),
    ]
    assert [r.status_code for r in responses] == [403] * 4
    assert Membership.objects.get(account=account, user=viewer).role == Role.VIEWER
    assert not Invitation.objects.exists()


def test_an_invitation_is_stored_hashed_and_accepted_by_a_new_user(owner_client, client, account):
    path = invite(owner_client, account)
    token = path.rstrip("/").rsplit("/", 1)[1]
    invitation = Invitation.objects.get()
    assert invitation.token_hash == hash_token(token)
    assert token not in str(Invitation.objects.values_list().get())
    owner_client.post("/accounts/logout/")
    page = client.get(path)
    assert "newbie@example.org" in page.content.decode()
    response = client.post(path, {"email": "evil@example.org", "name": "Newbie", "password": "a long pass phrase 9"})
    assert response.status_code == 302
    user = User.objects.get(email="newbie@example.org")
    assert user.email_verified
    assert Membership.objects.get(user=user).account == account
    assert Membership.objects.get(user=user).role == Role.ADMIN
    assert not User.objects.filter(email="evil@example.org").exists()


def test_an_invitation_works_only_once(owner_client, client, account, outsider):
    path = invite(owner_client, account, email=outsider.email, role="viewer")
    client.force_login(outsider)
    assert client.post(path).status_code == 302
    assert Membership.objects.get(account=account, user=outsider).role == Role.VIEWER
    Membership.objects.filter(account=account, user=outsider).delete()
    assert client.get(path).status_code == 404
    assert client.post(path).status_code == 404
    assert not Membership.objects.filter(account=account, user=outsider).exists()


def test_an_invitation_expires_after_48_hours(owner_client, client, account, outsider):
    path = invite(owner_client, account, email=outsider.email)
    client.force_login(outsider)
    with time_machine.travel(timezone.now() + timedelta(hours=47, minutes=59)):
        assert client.get(path).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(hours=48, minutes=1)):
        assert client.post(path).status_code == 404
    assert not Membership.objects.filter(account=account, user=outsider).exists()


def test_an_invitation_for_another_address_is_refused(owner_client, client, account, outsider):
    path = invite(owner_client, account, email="someone@example.org")
    client.force_login(outsider)
    response = client.post(path)
    assert "log in with that address" in response.content.decode()
    assert not Membership.objects.filter(account=account, user=outsider).exists()


def test_an_existing_user_who_is_logged_out_is_sent_to_log_in(owner_client, client, account, outsider):
    path = invite(owner_client, account, email=outsider.email)
    client.logout()
    assert client.get(path)["Location"] == f"/accounts/login/?next={path}"


def test_inviting_a_member_is_refused(owner_client, account, viewer):
    response = owner_client.post(f"/accounts/{account.public_id}/team/", {"email": viewer.email, "role": "admin"})
    assert "already a member" in response.content.decode()


def test_the_owner_changes_a_role(owner_client, account, viewer):
    owner_client.post(f"/accounts/{account.public_id}/team/role/", {"email": viewer.email, "role": "admin"})
    assert Membership.objects.get(account=account, user=viewer).role == Role.ADMIN


def test_the_last_owner_cannot_be_demoted_or_leave(owner_client, account, owner):
    owner_client.post(f"/accounts/{account.public_id}/team/role/", {"email": owner.email, "role": "viewer"})
    owner_client.post(f"/accounts/{account.public_id}/team/remove/", {"email": owner.email})
    assert Membership.objects.get(account=account, user=owner).role == Role.OWNER


def test_an_owner_can_leave_when_another_owner_remains(owner_client, account, owner, admin_user):
    owner_client.post(f"/accounts/{account.public_id}/team/role/", {"email": admin_user.email, "role": "owner"})
    owner_client.post(f"/accounts/{account.public_id}/team/remove/", {"email": owner.email})
    assert not Membership.objects.filter(account=account, user=owner).exists()


def test_a_viewer_can_leave(viewer_client, account, viewer):
    response = viewer_client.post(f"/accounts/{account.public_id}/team/remove/", {"email": viewer.email})
    assert response.status_code == 302
    assert not Membership.objects.filter(account=account, user=viewer).exists()


def test_the_owner_removes_a_member(owner_client, account, admin_user):
    owner_client.post(f"/accounts/{account.public_id}/team/remove/", {"email": admin_user.email})
    assert not Membership.objects.filter(account=account, user=admin_user).exists()


def test_the_account_switcher_changes_the_current_account(owner_client, owner, other_account, account):
    Membership.objects.create(account=other_account, user=owner, role=Role.VIEWER)
    owner_client.post("/accounts/switch/", {"account": str(other_account.public_id)})
    assert owner_client.get("/accounts/team/")["Location"] == f"/accounts/{other_account.public_id}/team/"
    assert 'id="account-switcher"' in owner_client.get(f"/accounts/{account.public_id}/team/").content.decode()


def test_the_owner_deletes_the_account_with_typed_confirmation(owner_client, account, site):
    assert owner_client.get(f"/accounts/{account.public_id}/delete/").status_code == 200
    owner_client.post(f"/accounts/{account.public_id}/delete/", {"confirm": "Alice"})
    assert Account.objects.filter(pk=account.pk).exists()
    owner_client.post(f"/accounts/{account.public_id}/delete/", {"confirm": account.name})
    assert not Account.objects.filter(pk=account.pk).exists()


def test_an_invitation_still_works_when_sign_up_is_invite_only(owner_client, client, account, settings):
    settings.SIGNUP_MODE = "invite"
    path = invite(owner_client, account, email="invited@example.org", role="viewer")
    client.logout()
    response = client.post(path, {"name": "Ivy", "password": "a long pass phrase 9"})
    assert response.status_code == 302
    assert Membership.objects.get(user__email="invited@example.org").account == account


def test_members_of_a_suspended_account_see_a_notice(viewer_client, account):
    account.suspended = True
    account.save()
    assert "is suspended" in viewer_client.get(f"/accounts/{account.public_id}/team/").content.decode()
    account.suspended = False
    account.save()
    assert "is suspended" not in viewer_client.get(f"/accounts/{account.public_id}/team/").content.decode()


def test_an_invitation_refuses_an_address_longer_than_the_column_holds(owner_client, account):
    email = "a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 63]) + ".com"
    response = owner_client.post(f"/accounts/{account.public_id}/team/", {"email": email, "role": "viewer"})
    assert response.status_code == 200
    assert "at most 254 characters" in response.content.decode()
    assert not Invitation.objects.exists()
