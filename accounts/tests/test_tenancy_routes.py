"""Every route of the URLconf and of the WebSocket router, with how it is reached and who is refused.

``REACH`` names, for each route the walker finds (``spinnakr.tests.routes``), the
principals that may reach it: anyone, a logged-in user on their own account, a
member with a minimum role, a dashboard viewer, a shared link, an API key with a
scope, or staff. A route missing from the table fails the suite. For each entry
the rightful principal gets through, an outsider gets 404, a role too low 403
and a bad key 401.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.db import transaction
from django.http import Http404
from django.test import Client

from accounts.access import dashboard_access, overview_sites
from accounts.apikeys import create_api_key
from accounts.models import Account, Membership, Role, Scope, Site, User
from analytics.live import consumers as live
from analytics.models import APIRateLimit, Goal, SharedLink
from spinnakr.tests.routes import http_routes, websocket_routes

pytestmark = [pytest.mark.django_db]


@dataclass(frozen=True)
class Request:
    method: str
    url: str  # {site}, {account}, {goal}, {slug}, {prefix} stand for the cast's objects
    data: Any = None
    as_json: bool = False


@dataclass(frozen=True)
class Public:
    """Anyone; nothing of a tenant behind it (log-in, sign-up, docs, health)."""


@dataclass(frozen=True)
class OwnAccount:
    """A logged-in user with at least ``role``, on their own accounts: no tenant in the URL."""

    request: Request
    role: Role = Role.VIEWER


@dataclass(frozen=True)
class Member:
    """A member of the object's account with at least ``role``."""

    request: Request
    role: Role


@dataclass(frozen=True)
class Viewer:
    """A dashboard: members, anyone on a public site, a session that unlocked a shared link."""

    request: Request


@dataclass(frozen=True)
class Link:
    """A shared link: whoever holds the slug, unless the account is suspended."""

    request: Request


@dataclass(frozen=True)
class Key:
    """An API key of the object's account with one of the view's scopes."""

    request: Request
    has_tenant: bool = True


@dataclass(frozen=True)
class Staff:
    """Django's admin: staff only."""


@dataclass(frozen=True)
class SiteSocket:
    """A live dashboard socket, reached as the dashboard page is."""


@dataclass(frozen=True)
class OverviewSocket:
    """The overview socket: the sites of the user's own current account."""


@dataclass(frozen=True)
class FeedSocket:
    """The live feed: an API key with ``feed:read`` of the site's account."""


@dataclass(frozen=True)
class ServiceToken:
    """The operator's scraper: the service's own bearer token (``METRICS_TOKEN``); no tenant's data."""


Reach = (
    Public | OwnAccount | Member | Viewer | Link | Key | Staff | SiteSocket | OverviewSocket | FeedSocket | ServiceToken
)

_ACCOUNT = "/accounts/{account}/"
_QUERY = {"site_id": "{site}", "metrics": ["visitors"], "date_range": "7d"}

REACH: dict[str, tuple[Reach, ...]] = {
    "/": (Public(),),
    "/healthz": (Public(),),
    "/metrics": (ServiceToken(),),
    "/accounts/2fa/": (Public(),),
    "/accounts/login/": (Public(),),
    "/accounts/login/2fa/": (Public(),),
    "/accounts/logout/": (Public(),),
    "/accounts/signup/": (Public(),),
    "/accounts/password_change/": (Public(),),
    "/accounts/password_change/done/": (Public(),),
    "/accounts/password_reset/": (Public(),),
    "/accounts/password_reset/done/": (Public(),),
    "/accounts/reset/<uidb64>/<token>/": (Public(),),
    "/accounts/reset/done/": (Public(),),
    "/accounts/invitations/<str:token>/": (Public(),),
    "/accounts/verify/<str:token>/": (Public(),),
    "/accounts/verify/resend/": (Public(),),
    "/api/docs/": (Public(),),
    "/api/redoc/": (Public(),),
    "/api/schema/": (Public(),),
    "/admin/login/": (Public(),),
    "/admin/logout/": (Public(),),
    "/accounts/keys/": (OwnAccount(Request("get", "/accounts/keys/")),),
    "/accounts/team/": (OwnAccount(Request("get", "/accounts/team/")),),
    "/sites/": (OwnAccount(Request("get", "/sites/")),),
    "/sites/summary.json": (OwnAccount(Request("get", "/sites/summary.json")),),
    "/sites/new/": (OwnAccount(Request("get", "/sites/new/"), Role.ADMIN),),
    "/accounts/switch/": (Member(Request("post", "/accounts/switch/", {"account": "{account}"}), Role.VIEWER),),
    "/accounts/<uuid:public_id>/team/": (Member(Request("get", _ACCOUNT + "team/"), Role.VIEWER),),
    "/accounts/<uuid:public_id>/team/role/": (
        Member(Request("post", _ACCOUNT + "team/role/", {"email": "viewer@tenant.test", "role": "admin"}), Role.OWNER),
    ),
    "/accounts/<uuid:public_id>/team/remove/": (
        Member(Request("post", _ACCOUNT + "team/remove/", {"email": "viewer@tenant.test"}), Role.OWNER),
    ),
    "/accounts/<uuid:public_id>/team/invitations/revoke/": (
        Member(Request("post", _ACCOUNT + "team/invitations/revoke/", {"email": "new@tenant.test"}), Role.OWNER),
    ),
    "/accounts/<uuid:public_id>/keys/": (Member(Request("get", _ACCOUNT + "keys/"), Role.ADMIN),),
    "/accounts/<uuid:public_id>/keys/<str:prefix>/revoke/": (
        Member(Request("post", _ACCOUNT + "keys/{prefix}/revoke/"), Role.ADMIN),
    ),
    "/accounts/<uuid:public_id>/delete/": (Member(Request("get", _ACCOUNT + "delete/"), Role.OWNER),),
    "/sites/<domain>/settings/": (Member(Request("get", "/sites/{site}/settings/"), Role.ADMIN),),
    "/sites/<domain>/settings/delete/": (Member(Request("post", "/sites/{site}/settings/delete/"), Role.ADMIN),),
    "/sites/<domain>/settings/rotate-key/": (
        Member(Request("post", "/sites/{site}/settings/rotate-key/"), Role.ADMIN),
    ),
    "/sites/<domain>/snippet/": (Member(Request("get", "/sites/{site}/snippet/"), Role.VIEWER),),
    "/sites/<path:domain>/goals/": (
        Member(Request("get", "/sites/{site}/goals/"), Role.VIEWER),
        Member(Request("post", "/sites/{site}/goals/", {"action": "delete", "goal_id": "{goal}"}), Role.ADMIN),
    ),
    "/sites/<path:domain>/sharing/": (Member(Request("get", "/sites/{site}/sharing/"), Role.ADMIN),),
    "/sites/<path:domain>/": (Viewer(Request("get", "/sites/{site}/")),),
    "/sites/<path:domain>/query": (Viewer(Request("post", "/sites/{site}/query", {"queries": []}, as_json=True)),),
    "/share/<str:slug>/": (Link(Request("get", "/share/{slug}/")),),
    "/api/v2/query/": (
        Key(Request("post", "/api/v2/query", _QUERY, as_json=True)),
        Member(Request("post", "/api/v2/query", _QUERY, as_json=True), Role.VIEWER),
    ),
    "/api/v1/stats/aggregate/": (Key(Request("get", "/api/v1/stats/aggregate", {"site_id": "{site}"})),),
    "/api/v1/stats/breakdown/": (
        Key(Request("get", "/api/v1/stats/breakdown", {"site_id": "{site}", "property": "event:page"})),
    ),
    "/api/v1/stats/realtime/visitors/": (
        Key(Request("get", "/api/v1/stats/realtime/visitors", {"site_id": "{site}"})),
    ),
    "/api/v1/stats/timeseries/": (Key(Request("get", "/api/v1/stats/timeseries", {"site_id": "{site}"})),),
    "/api/v1/sites/": (Key(Request("get", "/api/v1/sites", {"team_id": "{account}"})),),
    "/api/v1/sites/teams/": (Key(Request("get", "/api/v1/sites/teams"), has_tenant=False),),
    "/api/v1/sites/<domain>/": (
        Key(Request("get", "/api/v1/sites/{site}")),
        Key(Request("put", "/api/v1/sites/{site}", {"public": True}, as_json=True)),
        Key(Request("delete", "/api/v1/sites/{site}")),
    ),
    "/api/v1/sites/<domain>/export/": (Key(Request("get", "/api/v1/sites/{site}/export")),),
    "/api/v1/sites/<domain>/realtime/": (Key(Request("get", "/api/v1/sites/{site}/realtime")),),
    "/api/v1/sites/goals/": (
        Key(Request("get", "/api/v1/sites/goals", {"site_id": "{site}"})),
        Key(Request("put", "/api/v1/sites/goals", {"site_id": "{site}", "event_name": "Buy"}, as_json=True)),
        Member(
            Request("put", "/api/v1/sites/goals", {"site_id": "{site}", "event_name": "Buy"}, as_json=True), Role.ADMIN
        ),
    ),
    "/api/v1/sites/goals/<goal_id>/": (
        Key(Request("delete", "/api/v1/sites/goals/{goal}?site_id={site}")),
        Member(Request("delete", "/api/v1/sites/goals/{goal}?site_id={site}"), Role.ADMIN),
    ),
    # WebSockets (analytics.routes): the router's paths carry no leading slash.
    "/ws/sites/": (OverviewSocket(),),
    "/ws/sites/<path:domain>/": (SiteSocket(),),
    "/ws/feed/<path:domain>/": (FeedSocket(),),
}
STAFF_PREFIX = "/admin/"
LOWER = {Role.ADMIN: Role.VIEWER, Role.OWNER: Role.ADMIN}


def _reach(route: str) -> tuple[Reach, ...]:
    if route in REACH:
        return REACH[route]
    return (Staff(),) if route.startswith(STAFF_PREFIX) else ()


def _websocket(route: str) -> str:
    return route if route.startswith("/") else f"/{route}"


ALL_ROUTES = http_routes() + [_websocket(route) for route in websocket_routes()]


@pytest.mark.parametrize("route", ALL_ROUTES)
def test_every_route_says_how_it_is_reached(route: str) -> None:
    assert _reach(route), f"{route} has no entry in REACH: say who may reach it"


def test_the_table_names_no_route_that_does_not_exist() -> None:
    assert sorted(set(REACH) - set(ALL_ROUTES)) == []


@dataclass
class Cast:
    users: dict[Role, User]
    outsider: User
    staff: User
    account: Account
    site: Site
    other_site: Site
    ids: dict[str, str]
    key: str
    low_key: str
    outsider_key: str

    def fill(self, value: Any) -> Any:
        if isinstance(value, str):
            return value.format(**self.ids)
        if isinstance(value, dict):
            return {name: self.fill(item) for name, item in value.items()}
        if isinstance(value, list):
            return [self.fill(item) for item in value]
        return value


@pytest.fixture
def cast(db: None) -> Iterator[Cast]:
    account = Account.objects.create(name="Tenant")
    users = {}
    for role in Role:
        # No passwords: the clients log in with force_login, and hashing is slow.
        users[Role(role)] = User.objects.create_user(f"{role}@tenant.test", email_verified=True)
        Membership.objects.create(account=account, user=users[Role(role)], role=role)
    other = Account.objects.create(name="Elsewhere")
    outsider = User.objects.create_user("outsider@elsewhere.test", email_verified=True)
    Membership.objects.create(account=other, user=outsider, role=Role.OWNER)
    staff = User.objects.create_superuser("staff@tenant.test", None)
    site = Site.objects.create(account=account, domain="tenant.example")
    other_site = Site.objects.create(account=other, domain="elsewhere.example")
    all_scopes = [scope.value for scope in Scope]
    key, raw = create_api_key(account, "all", all_scopes)
    _, low_raw = create_api_key(account, "events only", [Scope.EVENTS_WRITE])
    _, outsider_raw = create_api_key(other, "all", all_scopes)
    for owner in (account, other):
        APIRateLimit.objects.create(account=owner, requests_per_hour=1_000_000)
    link = SharedLink(site=site, name="shared")
    link.set_password(None)
    link.save()
    goal = Goal.objects.create(site=site, display_name="Signup", event_name="Signup")
    ids = {
        "site": site.domain,
        "account": str(account.public_id),
        "goal": str(goal.pk),
        "slug": link.slug,
        "prefix": key.prefix,
    }
    yield Cast(users, outsider, staff, account, site, other_site, ids, raw, low_raw, outsider_raw)
    for pattern in ("login:fail:*", "signup:ip:*"):
        cache.delete_pattern(pattern)  # type: ignore[attr-defined]


def _client(user: User | None) -> Client:
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    return client


def _status(cast: Cast, client: Client, request: Request, bearer: str | None = None) -> int:
    """One request whose writes are undone before the next."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    kwargs: dict[str, Any] = {"headers": headers}
    data = cast.fill(request.data)
    if request.as_json:
        kwargs.update(data=data, content_type="application/json")
    elif data is not None:
        kwargs["data"] = data
    cookies = copy.deepcopy(client.cookies)
    savepoint = transaction.savepoint()
    try:
        return int(getattr(client, request.method)(cast.fill(request.url), **kwargs).status_code)
    finally:
        transaction.savepoint_rollback(savepoint)
        client.cookies = cookies


REFUSED = {401, 403, 404}
HTTP_CASES = [
    (route, index, reach)
    for route in http_routes()
    for index, reach in enumerate(_reach(route))
    if isinstance(reach, OwnAccount | Member | Viewer | Link | Key)
]


@pytest.mark.parametrize(("route", "index", "reach"), HTTP_CASES, ids=[f"{r}#{i}" for r, i, _ in HTTP_CASES])
def test_the_rightful_principal_gets_through_and_others_are_refused(
    cast: Cast, route: str, index: int, reach: Reach
) -> None:
    assert isinstance(reach, OwnAccount | Member | Viewer | Link | Key)
    answers: dict[str, int] = {}
    expected: dict[str, int | str] = {}
    if isinstance(reach, OwnAccount):
        answers["member"] = _status(cast, _client(cast.users[reach.role]), reach.request)
        answers["anonymous"] = _status(cast, _client(None), reach.request)
        expected = {"member": "through", "anonymous": 302}
        if reach.role in LOWER:
            answers["too low a role"] = _status(cast, _client(cast.users[LOWER[reach.role]]), reach.request)
            expected["too low a role"] = 403
    elif isinstance(reach, Member):
        answers["member"] = _status(cast, _client(cast.users[reach.role]), reach.request)
        answers["outsider"] = _status(cast, _client(cast.outsider), reach.request)
        expected = {"member": "through", "outsider": 404}
        if reach.role in LOWER:
            answers["too low a role"] = _status(cast, _client(cast.users[LOWER[reach.role]]), reach.request)
            expected["too low a role"] = 403
    elif isinstance(reach, Viewer):
        answers["member"] = _status(cast, _client(cast.users[Role.VIEWER]), reach.request)
        answers["outsider"] = _status(cast, _client(cast.outsider), reach.request)
        answers["anonymous"] = _status(cast, _client(None), reach.request)
        expected = {"member": "through", "outsider": 404, "anonymous": 404}
    elif isinstance(reach, Link):
        answers["holder"] = _status(cast, _client(None), reach.request)
        Account.objects.filter(pk=cast.account.pk).update(suspended=True)
        answers["holder, account suspended"] = _status(cast, _client(None), reach.request)
        expected = {"holder": "through", "holder, account suspended": 404}
    elif isinstance(reach, Key):
        client = _client(None)
        answers["key"] = _status(cast, client, reach.request, cast.key)
        answers["bad key"] = _status(cast, client, reach.request, cast.key[:-2] + "xx")
        answers["no key"] = _status(cast, client, reach.request)
        answers["key without the scope"] = _status(cast, client, reach.request, cast.low_key)
        expected = {"key": "through", "bad key": 401, "no key": 401, "key without the scope": 403}
        if reach.has_tenant:
            answers["outsider's key"] = _status(cast, client, reach.request, cast.outsider_key)
            expected["outsider's key"] = 404
    seen = {
        who: ("through" if expected[who] == "through" and status not in REFUSED else status)
        for who, status in answers.items()
    }
    assert seen == expected, f"{reach.request.method.upper()} {reach.request.url}: {answers}"


def test_every_admin_route_turns_away_a_member_who_is_not_staff(cast: Cast) -> None:
    client = _client(cast.users[Role.OWNER])
    admin_routes = [route for route in http_routes() if _reach(route) == (Staff(),)]
    answers = {}
    for route in admin_routes:
        url = route.replace("<path:object_id>", "1").replace("<path:content_type_id>", "1")
        url = url.replace("<app_label>", "accounts").replace("<url>", "x")
        response = client.get(url)
        answers[route] = (response.status_code, response.headers.get("Location", "").split("?")[0])
    assert {route: answer for route, answer in answers.items() if answer != (302, "/admin/login/")} == {}


def test_the_site_socket_refuses_outsiders_as_the_dashboard_does(cast: Cast) -> None:
    # SiteLiveConsumer closes with 4404 on the Http404 of the decision it shares with the page.
    assert dashboard_access(cast.users[Role.VIEWER], {}, cast.site.domain).site == cast.site
    with pytest.raises(Http404):
        dashboard_access(cast.outsider, {}, cast.site.domain)
    with pytest.raises(Http404):
        dashboard_access(AnonymousUser(), {}, cast.site.domain)


def test_the_overview_socket_carries_only_the_users_own_account(cast: Cast) -> None:
    assert overview_sites(cast.users[Role.VIEWER], {}) == {cast.site.pk: cast.site.domain}
    assert overview_sites(cast.outsider, {"spinnakr_account": str(cast.account.public_id)}) == {
        cast.other_site.pk: cast.other_site.domain
    }
    assert overview_sites(AnonymousUser(), {}) == {}


def test_the_feed_socket_refuses_a_bad_key_a_low_scope_and_an_outsider(cast: Cast) -> None:
    codes = {}
    for who, raw in (("bad key", cast.key[:-2] + "xx"), ("low scope", cast.low_key), ("outsider", cast.outsider_key)):
        try:
            live.feed_site(raw, cast.site.domain)
        except live.FeedError as error:
            codes[who] = error.code
    assert live.feed_site(cast.key, cast.site.domain)[1] == cast.site
    assert codes == {"bad key": 4401, "low scope": 4403, "outsider": 4404}


def test_metrics_turn_away_a_customers_session_and_api_key(cast: Cast, settings: Any) -> None:
    settings.METRICS_TOKEN = "operator-token-of-the-service"
    client = Client()
    client.force_login(cast.users[Role.OWNER])

    answers = [
        client.get("/metrics").status_code,
        client.get("/metrics", headers={"authorization": f"Bearer {cast.key}"}).status_code,
    ]

    assert answers == [401, 401]
