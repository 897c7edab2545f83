"""Every accounts page against the whole cast: outsiders get 404, too-low roles 403.

One table lists each page with the lowest role allowed; the tests derive the
expectations for the owner, the admin, the viewer and the outsider from it.
"""

from __future__ import annotations

import pytest

from accounts.models import ROLE_RANK, Role

PAGES = [
    ("get", "/sites/{domain}/snippet/", {}, Role.VIEWER),
    ("get", "/sites/{domain}/settings/", {}, Role.ADMIN),
    ("post", "/sites/{domain}/settings/", {"domain": "", "timezone": "UTC"}, Role.ADMIN),
    ("post", "/sites/{domain}/settings/rotate-key/", {}, Role.ADMIN),
    ("post", "/sites/{domain}/settings/delete/", {"confirm": "wrong"}, Role.ADMIN),
    ("post", "/sites/new/", {"account": "{account}", "domain": "", "timezone": "UTC"}, Role.ADMIN),
    ("get", "/accounts/{account}/team/", {}, Role.VIEWER),
    ("post", "/accounts/{account}/team/", {"email": "not-an-email", "role": "viewer"}, Role.OWNER),
    ("post", "/accounts/{account}/team/role/", {"email": "vera@example.com", "role": "viewer"}, Role.OWNER),
    ("post", "/accounts/{account}/team/remove/", {"email": "alice@example.com"}, Role.OWNER),
    ("post", "/accounts/{account}/team/invitations/revoke/", {"email": "nobody@example.com"}, Role.OWNER),
    ("get", "/accounts/{account}/keys/", {}, Role.ADMIN),
    ("post", "/accounts/{account}/keys/", {"name": ""}, Role.ADMIN),
    ("post", "/accounts/{account}/keys/{prefix}/revoke/", {}, Role.ADMIN),
    ("get", "/accounts/{account}/delete/", {}, Role.OWNER),
    ("post", "/accounts/{account}/delete/", {"confirm": "wrong"}, Role.OWNER),
    ("post", "/accounts/switch/", {"account": "{account}"}, Role.VIEWER),
]
IDS = [f"{method} {path}" for method, path, _, _ in PAGES]


@pytest.fixture
def cast(owner, admin_user, viewer, outsider, site, write_key):
    return {"owner": owner, "admin": admin_user, "viewer": viewer, "outsider": outsider}


def call(client, method, path, data, account, site, key):
    values = {"account": str(account.public_id), "domain": site.domain, "prefix": key.prefix}
    url = path.format(**values)
    body = {name: value.format(**values) for name, value in data.items()}
    return getattr(client, method)(url, body)


@pytest.mark.parametrize(("method", "path", "data", "lowest"), PAGES, ids=IDS)
def test_an_outsider_gets_404(client, cast, account, site, write_key, method, path, data, lowest):
    client.force_login(cast["outsider"])
    assert call(client, method, path, data, account, site, write_key[0]).status_code == 404


@pytest.mark.parametrize(("method", "path", "data", "lowest"), PAGES, ids=IDS)
@pytest.mark.parametrize("member", ["owner", "admin", "viewer"])
def test_members_get_403_below_the_needed_role_and_pass_from_it(
    client, cast, account, site, write_key, method, path, data, lowest, member
):
    client.force_login(cast[member])
    status = call(client, method, path, data, account, site, write_key[0]).status_code
    role = Role(member)
    expected_denied = ROLE_RANK[role] < ROLE_RANK[lowest]
    assert (status == 403) is expected_denied, status
    assert status != 404


@pytest.mark.parametrize(("method", "path", "data", "lowest"), PAGES, ids=IDS)
def test_anonymous_visitors_are_sent_to_log_in(client, cast, account, site, write_key, method, path, data, lowest):
    response = call(client, method, path, data, account, site, write_key[0])
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
