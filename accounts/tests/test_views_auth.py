from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Membership, Role, User
from accounts.tests.conftest import PASSWORD
from spinnakr.tests.waiting import wait_for

SIGNUP = {"email": "New@Example.org", "name": "Nina", "account_name": "Nina's Shop", "password": "a long pass phrase 9"}


def link_in(message, prefix: str) -> str:
    match = re.search(rf"https?://[^\s]+({re.escape(prefix)}[^\s]+)", message.body)
    assert match, message.body
    return match.group(1)


def current_code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):0{device.digits}d}"


def test_the_login_page_renders_a_form_with_username_and_password(client, db):
    body = client.get("/accounts/login/").content.decode()
    assert 'name="username"' in body
    assert 'name="password"' in body
    assert 'name="csrfmiddlewaretoken"' in body


def test_sign_up_verifies_the_email_and_creates_an_owned_account(client, db):
    response = client.post("/accounts/signup/", SIGNUP)
    assert response.status_code == 200
    user = User.objects.get(email="new@example.org")
    assert not user.email_verified
    assert Membership.objects.get(user=user).role == Role.OWNER
    assert Membership.objects.get(user=user).account.name == "Nina's Shop"
    # Before verification the login is refused with a clear message.
    refused = client.post("/accounts/login/", {"username": "new@example.org", "password": SIGNUP["password"]})
    assert "Confirm your e-mail" in refused.content.decode()
    assert len(mail.outbox) == 1
    verify = client.get(link_in(mail.outbox[0], "/accounts/verify/"))
    assert (verify.status_code, verify["Location"]) == (302, "/sites/new/")
    assert User.objects.get(pk=user.pk).email_verified
    assert client.get("/sites/new/").status_code == 200


def test_a_tampered_verification_link_is_refused(client, db):
    client.post("/accounts/signup/", SIGNUP)
    path = link_in(mail.outbox[0], "/accounts/verify/")
    assert client.get(path[:-3] + "xx/").status_code == 400
    assert not User.objects.get(email="new@example.org").email_verified


def test_a_verification_link_expires_after_three_days(client, db):
    client.post("/accounts/signup/", SIGNUP)
    path = link_in(mail.outbox[0], "/accounts/verify/")
    with time_machine.travel(timezone.now() + timedelta(days=3, minutes=1)):
        assert client.get(path).status_code == 400


def test_sign_up_refuses_a_taken_email_and_a_weak_password(client, owner):
    response = client.post("/accounts/signup/", {**SIGNUP, "email": owner.email.upper(), "password": "123"})
    body = response.content.decode()
    assert "exists already" in body
    assert "too short" in body
    assert User.objects.count() == 1


def test_sign_up_is_closed_in_invite_mode(client, db, settings):
    settings.SIGNUP_MODE = "invite"
    assert client.get("/accounts/signup/").status_code == 403
    assert client.post("/accounts/signup/", SIGNUP).status_code == 403
    assert not User.objects.filter(email="new@example.org").exists()


def test_resending_the_verification_link_answers_the_same_for_unknown_addresses(client, db):
    client.post("/accounts/signup/", SIGNUP)
    known = client.post("/accounts/verify/resend/", {"email": "new@example.org"})
    unknown = client.post("/accounts/verify/resend/", {"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 200
    assert len(mail.outbox) == 2


def test_log_in_and_log_out(client, owner, site):
    response = client.post("/accounts/login/", {"username": "ALICE@example.com", "password": PASSWORD})
    assert (response.status_code, response["Location"]) == (302, "/")
    assert client.get("/sites/shop.example/snippet/").status_code == 200
    assert client.get("/accounts/logout/").status_code == 405
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/sites/shop.example/snippet/").status_code == 302


def test_log_in_with_a_wrong_password_fails(client, owner):
    response = client.post("/accounts/login/", {"username": owner.email, "password": "wrong"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_log_in_is_throttled_per_account(client, owner, settings):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    for _ in range(3):
        client.post("/accounts/login/", {"username": owner.email, "password": "wrong"}, REMOTE_ADDR="10.0.0.1")
    # Even the right password from a new IP is refused while the account is locked.
    response = client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD}, REMOTE_ADDR="10.0.0.2")
    assert "Too many failed log-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_log_in_is_throttled_per_ip(client, owner, settings):
    settings.LOGIN_FAILURES_PER_IP = 3
    for n in range(3):
        client.post("/accounts/login/", {"username": f"guess{n}@example.com", "password": "x"}, REMOTE_ADDR="10.0.0.9")
    blocked = client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD}, REMOTE_ADDR="10.0.0.9")
    assert "Too many failed log-ins" in blocked.content.decode()
    allowed = client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD}, REMOTE_ADDR="10.0.0.10")
    assert allowed.status_code == 302


def test_the_throttle_window_ends(client, owner, settings):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 2
    settings.LOGIN_THROTTLE_WINDOW = 1
    for _ in range(2):
        client.post("/accounts/login/", {"username": owner.email, "password": "wrong"}, REMOTE_ADDR="10.0.1.1")
    assert (
        "Too many" in client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD}).content.decode()
    )
    # The window is the throttle key's expiry in Redis, whose clock time-machine cannot move.
    wait_for(
        lambda: client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD}).status_code == 302,
        timeout=5,
        message="a log-in once the 1-s throttle window ended",
    )


def test_two_factor_setup_then_login_asks_for_the_code(client, owner):
    client.force_login(owner)
    page = client.get("/accounts/2fa/")
    assert page.status_code == 200
    assert "data:image/svg+xml" in page.content.decode()
    device = TOTPDevice.objects.get(user=owner, confirmed=False)
    wrong_code = f"{(int(current_code(device)) + 1) % 10**6:06d}"
    assert client.post("/accounts/2fa/", {"code": wrong_code}).status_code == 200
    assert not TOTPDevice.objects.get(user=owner).confirmed
    # django-otp slows guessing down: the next try is accepted only after a pause.
    with time_machine.travel(timezone.now() + timedelta(seconds=5)):
        device.refresh_from_db()
        assert client.post("/accounts/2fa/", {"code": current_code(device)}).status_code == 302
    assert TOTPDevice.objects.get(user=owner).confirmed
    client.post("/accounts/logout/")

    step_one = client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD, "next": "/sites/new/"})
    assert step_one["Location"] == "/accounts/login/2fa/"
    assert "_auth_user_id" not in client.session
    assert client.get("/sites/new/").status_code == 302
    device.refresh_from_db()
    # Two TOTP steps later: django-otp refuses a code of a step already used (replay).
    with time_machine.travel(timezone.now() + timedelta(seconds=95)):
        wrong = client.post("/accounts/login/2fa/", {"code": "abcdef"})
        assert "not valid" in wrong.content.decode()
        step_two = client.post("/accounts/login/2fa/", {"code": current_code(device)})
    assert step_two["Location"] == "/sites/new/"
    assert client.session["_auth_user_id"] == str(owner.pk)


def test_the_2fa_step_without_a_pending_login_goes_back_to_login(client, db):
    assert client.get("/accounts/login/2fa/")["Location"] == "/accounts/login/"


def test_password_reset_end_to_end(client, owner):
    assert client.get("/accounts/password_reset/").status_code == 200
    response = client.post("/accounts/password_reset/", {"email": owner.email})
    assert response["Location"] == "/accounts/password_reset/done/"
    assert len(mail.outbox) == 1
    path = link_in(mail.outbox[0], "/accounts/reset/")
    form = client.get(path, follow=True)
    assert form.context["validlink"]
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": "another long phrase 7", "new_password2": "another long phrase 7"}
    )
    assert done["Location"] == "/accounts/reset/done/"
    assert client.login(username=owner.email, password="another long phrase 7")
    reused = client.get(path, follow=True)
    assert not reused.context["validlink"]


@pytest.mark.parametrize(
    "path", ["/accounts/2fa/", "/accounts/team/", "/accounts/keys/", "/sites/new/", "/accounts/password_change/"]
)
def test_pages_need_a_login(client, db, path):
    assert client.get(path)["Location"].startswith("/accounts/login/?next=")


def test_sign_up_is_throttled_per_ip(client, db, settings):
    settings.SIGNUPS_PER_IP_PER_HOUR = 2
    for n in range(3):
        client.post("/accounts/signup/", {**SIGNUP, "email": f"n{n}@example.org"}, REMOTE_ADDR="10.9.9.9")
    assert sorted(User.objects.values_list("email", flat=True)) == ["n0@example.org", "n1@example.org"]


def test_a_password_reset_also_verifies_the_email(client, db):
    client.post("/accounts/signup/", SIGNUP)
    mail.outbox.clear()
    client.post("/accounts/password_reset/", {"email": "new@example.org"})
    form = client.get(link_in(mail.outbox[0], "/accounts/reset/"), follow=True)
    client.post(
        form.redirect_chain[-1][0], {"new_password1": "another long phrase 7", "new_password2": "another long phrase 7"}
    )
    assert User.objects.get(email="new@example.org").email_verified
    assert (
        client.post(
            "/accounts/login/", {"username": "new@example.org", "password": "another long phrase 7"}
        ).status_code
        == 302
    )


def test_a_logged_in_user_changes_the_password(owner_client, owner):
    assert owner_client.get("/accounts/password_change/").status_code == 200
    response = owner_client.post(
        "/accounts/password_change/",
        {"old_password": PASSWORD, "new_password1": "brand new phrase 31", "new_password2": "brand new phrase 31"},
    )
    assert response["Location"] == "/accounts/password_change/done/"
    owner.refresh_from_db()
    assert owner.check_password("brand new phrase 31")


def test_changing_the_password_needs_the_old_one(owner_client, owner):
    owner_client.post(
        "/accounts/password_change/",
        {"old_password": "wrong", "new_password1": "brand new phrase 31", "new_password2": "brand new phrase 31"},
    )
    owner.refresh_from_db()
    assert owner.check_password(PASSWORD)


def _enable_2fa(client, user) -> TOTPDevice:
    client.force_login(user)
    client.get("/accounts/2fa/")
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    client.post("/accounts/2fa/", {"code": current_code(device)})
    client.post("/accounts/logout/")
    device.refresh_from_db()
    return device


def test_the_code_step_expires_after_five_minutes(client, owner):
    device = _enable_2fa(client, owner)
    assert device.confirmed
    start = timezone.now()
    with time_machine.travel(start + timedelta(seconds=60)):
        client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD})
    with time_machine.travel(start + timedelta(seconds=60 + 301)):
        response = client.post("/accounts/login/2fa/", {"code": current_code(device)})
    assert response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session


def test_wrong_codes_lock_the_account_even_when_the_password_is_entered_again(client, owner, settings):
    settings.LOGIN_FAILURES_PER_ACCOUNT = 3
    device = _enable_2fa(client, owner)
    start = timezone.now()
    wrong = f"{(int(current_code(device)) + 1) % 10**6:06d}"
    for round_ in range(2):
        with time_machine.travel(start + timedelta(seconds=60 + 10 * round_)):
            client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD})
            client.post("/accounts/login/2fa/", {"code": wrong})
            client.post("/accounts/login/2fa/", {"code": wrong})
    with time_machine.travel(start + timedelta(seconds=120)):
        response = client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD})
    assert "Too many failed log-ins" in response.content.decode()


def test_sign_up_refuses_an_address_longer_than_the_column_holds(client, db):
    # 258 characters: a valid address for the form field's own 320-character limit.
    email = "a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 63]) + ".com"
    response = client.post("/accounts/signup/", {**SIGNUP, "email": email})
    assert response.status_code == 200
    assert "at most 254 characters" in response.content.decode()
    assert not User.objects.filter(email__startswith="aaaa").exists()
