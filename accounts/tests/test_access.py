from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.test import RequestFactory

from accounts import access
from accounts.access import (
    current_account,
    dashboard_access,
    get_account_for_user,
    get_site_for_user,
    set_current_account,
    sites_for_user,
    user_role,
)
from accounts.api_auth import APIKeyUser
from accounts.models import Membership, Role, Site
from analytics.api.base import APIBaseView
from analytics.models import SharedLink


def test_it_returns_the_site_to_a_viewer(site, viewer):
    assert get_site_for_user(viewer, "shop.example") == site


def test_it_matches_the_domain_case_insensitively(site, owner):
    assert get_site_for_user(owner, "Shop.Example") == site


def test_it_hides_a_site_from_an_outsider(site, outsider):
    with pytest.raises(Http404):
        get_site_for_user(outsider, "shop.example")


def test_it_hides_a_site_from_an_anonymous_user(site):
    with pytest.raises(Http404):
        get_site_for_user(AnonymousUser(), "shop.example")


def test_it_hides_a_site_from_an_inactive_member(site, viewer):
    viewer.is_active = False
    viewer.save()
    with pytest.raises(Http404):
        get_site_for_user(viewer, "shop.example")


def test_it_answers_404_for_an_unknown_domain(site, owner):
    with pytest.raises(Http404):
        get_site_for_user(owner, "nowhere.example")


def test_it_refuses_a_viewer_an_admin_action(site, viewer):
    with pytest.raises(PermissionDenied):
        get_site_for_user(viewer, "shop.example", role=Role.ADMIN)


def test_it_allows_an_admin_an_admin_action(site, admin_user):
    assert get_site_for_user(admin_user, "shop.example", role=Role.ADMIN) == site


def test_it_refuses_an_admin_an_owner_action(account, admin_user):
    with pytest.raises(PermissionDenied):
        get_account_for_user(admin_user, account.public_id, role=Role.OWNER)


def test_it_returns_the_account_to_its_owner_by_string_id(account, owner):
    assert get_account_for_user(owner, str(account.public_id), role=Role.OWNER) == account


def test_it_hides_an_account_from_an_outsider(account, outsider):
    with pytest.raises(Http404):
        get_account_for_user(outsider, account.public_id)


def test_it_answers_404_for_a_malformed_account_id(owner):
    with pytest.raises(Http404):
        get_account_for_user(owner, "not-a-uuid")


def test_it_answers_404_for_an_unknown_account_id(owner):
    with pytest.raises(Http404):
        get_account_for_user(owner, uuid.uuid4())


def test_it_reports_each_role(account, owner, admin_user, viewer, outsider):
    assert [user_role(u, account) for u in (owner, admin_user, viewer, outsider)] == [
        Role.OWNER,
        Role.ADMIN,
        Role.VIEWER,
        None,
    ]


def test_it_lists_only_the_users_sites(site, other_site, owner, outsider):
    assert list(sites_for_user(owner)) == [site]
    assert list(sites_for_user(outsider)) == [other_site]
    assert list(sites_for_user(AnonymousUser())) == []


def test_it_picks_the_account_chosen_in_the_session(account, other_account, owner, client):
    Membership.objects.create(account=other_account, user=owner, role=Role.VIEWER)
    request = RequestFactory().get("/")
    request.user = owner
    request.session = client.session
    set_current_account(request, other_account)
    assert current_account(request) == other_account


def test_it_ignores_a_session_account_the_user_left(account, other_account, owner, client):
    request = RequestFactory().get("/")
    request.user = owner
    request.session = client.session
    request.session["spinnakr_account"] = str(other_account.public_id)
    assert current_account(request) == account


def test_it_has_no_current_account_for_anonymous_users(db, client):
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    request.session = client.session
    assert current_account(request) is None


def test_a_public_site_is_readable_by_anyone_read_only(site, outsider):
    site.public = True
    site.save()
    readers = [dashboard_access(AnonymousUser(), {}, "shop.example"), dashboard_access(outsider, {}, "shop.example")]
    assert [(access.site, access.via, access.read_only) for access in readers] == [(site, "public", True)] * 2


def test_a_private_site_is_readable_only_by_members(site, viewer, outsider):
    assert dashboard_access(viewer, {}, "shop.example").via == "member"
    with pytest.raises(Http404):
        dashboard_access(outsider, {}, "shop.example")
    with pytest.raises(Http404):
        dashboard_access(AnonymousUser(), {}, "shop.example")


def test_a_suspended_account_hides_its_public_site_from_outsiders_but_not_from_members(site, viewer, outsider):
    site.public = True
    site.save()
    site.account.suspended = True
    site.account.save()
    assert dashboard_access(viewer, {}, "shop.example").via == "member"
    with pytest.raises(Http404):
        dashboard_access(outsider, {}, "shop.example")


def test_it_looks_a_site_up_in_one_query(site, viewer, django_assert_num_queries):
    with django_assert_num_queries(1):
        get_site_for_user(viewer, "shop.example")


def test_an_api_keys_principal_is_no_member_of_any_account(account, site, write_key):
    principal = APIKeyUser(write_key[0])
    assert user_role(principal, account) is None
    assert list(sites_for_user(principal)) == []
    with pytest.raises(Http404):
        get_site_for_user(principal, "shop.example")


def test_the_api_docs_render_for_a_request_with_an_api_key(client, write_key):
    # The docs page's navigation asks for the current account of DRF's user, here the key's principal.
    response = client.get("/api/docs/", headers={"Authorization": f"Bearer {write_key[1]}"})
    assert response.status_code == 200


def test_a_key_is_refused_as_bad_then_suspended_then_short_of_scope(account, read_key):
    _, raw = read_key
    with pytest.raises(access.BadKey):
        access.key_for_bearer(raw[:-2] + "xx", "stats:read")
    with pytest.raises(access.ScopeMissing):
        access.key_for_bearer(raw, "sites:write")
    account.suspended = True
    account.save()
    with pytest.raises(access.AccountSuspended):
        access.key_for_bearer(raw, "sites:write")


def test_a_key_reaches_its_own_accounts_sites_only(site, other_site, read_key):
    key = access.key_for_bearer(read_key[1], "stats:read")
    assert access.site_for_key(key, "Shop.Example") == site
    assert list(access.sites_for_key(key)) == [site]
    with pytest.raises(Http404):
        access.site_for_key(key, other_site.domain)


def test_a_suspended_accounts_key_reaches_none_of_its_sites(account, site, read_key):
    key = access.key_for_bearer(read_key[1])
    account.suspended = True
    account.save()
    key.account.refresh_from_db()
    with pytest.raises(access.AccountSuspended):
        access.site_for_key(key, site.domain)


def test_a_shared_link_of_a_suspended_account_is_not_found(account, site):
    link = SharedLink(site=site, name="press")
    link.set_password(None)
    link.save()
    assert access.link_for_slug(link.slug) == link
    account.suspended = True
    account.save()
    with pytest.raises(Http404):
        access.link_for_slug(link.slug)


def test_an_api_view_cannot_override_how_it_finds_its_sites():
    with pytest.raises(TypeError, match="scoped_sites"):
        type("Unscoped", (APIBaseView,), {"scoped_sites": lambda self: Site.objects.all()})
