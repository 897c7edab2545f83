"""Every URL pattern of the URLconf, walked with hostile input: no answer is a 5xx.

Each path parameter is filled with NUL characters, unpaired surrogates, overlong
strings, out-of-range numbers and dates, percent-encoded NULs, or a real object's id
(so the query string and the body reach the view behind its lookup). Each URL is
requested with GET (hostile query string) and POST (hostile form, hostile JSON),
anonymously (with hostile cookies), as the owner of the site, as staff on the admin, and with an API key on
API routes. Every request runs in a savepoint that is rolled back, so one request's
writes never change what the next one meets.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from accounts.apikeys import create_api_key
from accounts.models import Account, Membership, Role, Site, User
from analytics.models import APIRateLimit, Goal, SharedLink
from spinnakr.tests.routes import http_routes

pytestmark = [pytest.mark.django_db]


ROUTES = http_routes()
PLACEHOLDER = re.compile(r"<[^<>]+>")

# Stand-ins for the real objects' ids, swapped in by ``Cast.real``.
REAL = ("@site", "@account", "@key", "@slug", "@goal", "@user")


def _with_nul(text: str) -> str:
    return text[: len(text) // 2] + "\x00" + text[len(text) // 2 :]


HOSTILE = st.one_of(
    st.text(max_size=12).map(_with_nul),
    st.sampled_from(["\ud800", "\udfff", "a\udc80b", "\ud83d\x00"]),
    # Overlong, and an address valid for forms.EmailField (320) but longer than its column (254).
    st.sampled_from(["a" * 3000, "é" * 2000, "%00" * 300, "9" * 400, "a" * 64 + "@" + "b." * 95 + "example.com"]),
    st.sampled_from(["-1", "0", "99999999999999999999", "-9223372036854775809", "1e309", "NaN", "Infinity"]),
    st.sampled_from(
        [
            "0001-01-01",
            "9999-12-31",
            "0000-00-00",
            "10000-01-01",
            "0001-01-01,9999-12-31",
            "9999-12-31,9999-12-31",
            "9999-12-31T23:59:59+14:00",
            "0001-01-01T00:00:00-14:00",
        ]
    ),
    st.text(max_size=12),
)
# Already percent-encoded: NUL, an encoded percent sign, an encoded surrogate, an overlong NUL, a stray byte.
ENCODED = st.sampled_from(["%00", "%2500", "%ED%A0%80", "%C0%80", "%FF", "a%00b"])
VALUE = st.one_of(HOSTILE, st.sampled_from(REAL))
# A quoted cookie value spells octal escapes: "\\000" arrives as a NUL character.
COOKIE = st.sampled_from(
    [
        "",
        'sessionid="abcdefgh\\000ijkl"',
        'csrftoken="a\\000b"; sessionid=' + "a" * 4000,
        'sessionid="\\355\\240\\200abcdefgh"',
        "sessionid=%00%00%00%00%00%00%00%00",
        'spinnakr_account="\\000"',
    ]
)

QUERY_PARAMS = (
    "site_id", "period", "date", "metrics", "filters", "property", "interval", "compare", "limit", "page",
    "after", "before", "team_id", "next", "q", "o", "p", "_changelist_filters",
)  # fmt: skip
FORM_FIELDS = (
    "email", "password", "name", "value", "goal_type", "display_name", "action", "slug", "goal_id", "domain",
    "timezone", "allowed_origins", "public", "confirm", "role", "account", "scopes", "code", "username",
    "new_password1", "new_password2", "old_password", "site_id", "event_name", "page_path",
)  # fmt: skip


def _deep(opening: str, closing: str, inner: str, levels: int) -> str:
    return opening * levels + inner + closing * levels


NESTED_AND = (
    '{"site_id": "@site", "metrics": ["visitors"], "date_range": "7d", "filters": ['
    + _deep('["and", [', "]]", '["is", "event:page", ["/"]]', 1000)
    + "]}"
)
DEEP_BODIES = st.sampled_from([_deep("[", "]", "", 5000), _deep('{"a": ', "}", "1", 1200), NESTED_AND])
DATE_RANGE = st.one_of(st.lists(HOSTILE, min_size=2, max_size=2), HOSTILE, st.sampled_from(["7d", "all", "realtime"]))
QUERY_BODY = st.fixed_dictionaries(
    {"site_id": VALUE, "metrics": st.sampled_from([["visitors"], ["visitors", "pageviews"]])},
    optional={
        "date_range": DATE_RANGE,
        "filters": st.lists(st.tuples(st.sampled_from(["is", "contains"]), st.just("event:page"), st.lists(HOSTILE))),
        "dimensions": st.lists(HOSTILE.map(lambda text: f"event:props:{text}"), max_size=1),
        "include": st.fixed_dictionaries({"comparisons": st.just({"mode": "year_over_year"})}),
    },
)
JSON_BODY = st.one_of(
    QUERY_BODY.map(json.dumps),
    QUERY_BODY.map(lambda body: json.dumps({"queries": [{"id": "q", "query": body, "props": True}]})),
    st.dictionaries(st.sampled_from(FORM_FIELDS), VALUE, max_size=4).map(json.dumps),
    DEEP_BODIES,
)


def _encode(text: str) -> str:
    # The surrogates travel as the bytes a client could send; Django decodes them with replacement.
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


FORM = "application/x-www-form-urlencoded"


def _urlencoded(fields: dict[str, str], raw: str) -> str:
    pairs = [f"{_encode(key)}={_encode(value)}" for key, value in fields.items()]
    return "&".join([*pairs, raw] if raw else pairs)


@dataclass
class Cast:
    owner: User
    staff: User
    site: Site
    account: Account
    key_prefix: str
    secret: str
    slug: str
    goal_id: int

    def real(self, value: str) -> str:
        ids = {
            "@site": self.site.domain,
            "@account": str(self.account.public_id),
            "@key": self.key_prefix,
            "@slug": self.slug,
            "@goal": str(self.goal_id),
            "@user": str(self.owner.pk),
        }
        return ids.get(value, value)

    def fill(self, text: str) -> str:
        return re.sub("|".join(REAL), lambda found: self.real(found.group()), text)


@pytest.fixture
def cast(db: None) -> Iterator[Cast]:
    account = Account.objects.create(name="Hostile Co")
    # No passwords: the clients log in with force_login, and hashing costs ~0.3 s each.
    owner = User.objects.create_user("owner@hostile.test", email_verified=True)
    Membership.objects.create(account=account, user=owner, role=Role.OWNER)
    staff = User.objects.create_superuser("staff@hostile.test", None)
    site = Site.objects.create(account=account, domain="hostile.example", timezone="Europe/Berlin")
    key, secret = create_api_key(account, "walker", ["stats:read", "sites:write"], created_by=owner)
    # The walker sends far more than an hour's worth of requests with one key.
    APIRateLimit.objects.create(account=account, requests_per_hour=10_000_000)
    link = SharedLink(site=site, name="walker")
    link.set_password(None)
    link.save()
    goal = Goal.objects.create(site=site, display_name="Signup", event_name="Signup")
    yield Cast(owner, staff, site, account, key.prefix, secret, link.slug, goal.pk)
    # Failed log-ins and sign-ups are counted in Redis, which outlives the test's transaction.
    for pattern in ("login:fail:*", "signup:ip:*"):
        cache.delete_pattern(pattern)  # type: ignore[attr-defined]


def _clients(cast: Cast, url: str, cookie: str) -> list[tuple[str, Client, dict[str, str]]]:
    def logged_in(user: User) -> Client:
        client = Client(raise_request_exception=False)
        client.force_login(user)
        return client

    anonymous = Client(raise_request_exception=False)
    clients: list[tuple[str, Client, dict[str, str]]] = [("anonymous", anonymous, {"Cookie": cookie} if cookie else {})]
    # On the admin the owner is turned away like anyone without staff status.
    if url.startswith("/admin/"):
        clients.append(("staff", logged_in(cast.staff), {}))
    else:
        clients.append(("owner", logged_in(cast.owner), {}))
    if url.startswith("/api/"):
        clients.append(("API key", Client(raise_request_exception=False), {"Authorization": f"Bearer {cast.secret}"}))
    return clients


def _send(client: Client, method: str, url: str, **kwargs: Any) -> int:
    """One request whose writes (and session changes) are undone before the next."""
    cookies = copy.deepcopy(client.cookies)
    savepoint = transaction.savepoint()
    try:
        return int(getattr(client, method)(url, **kwargs).status_code)
    finally:
        transaction.savepoint_rollback(savepoint)
        client.cookies = cookies


KNOWN_CASES: dict[str, Any] = {
    "segments": [("text", "@site")] * 4,
    "query": {"site_id": "@site", "period": "custom", "date": "0001-01-01,9999-12-31"},
    "raw_query": "",
    "form": {"email": "a\x00@example.com", "value": "a\x00", "name": "a\x00", "action": "create"},
    "raw_form": "",
    "multipart": False,
    "cookie": 'sessionid="abcdefgh\\000ijkl"',
    "body": json.dumps({"site_id": "@site", "metrics": ["visitors"], "date_range": ["0001-01-01", "9999-12-31"]}),
}
SEGMENT = st.one_of(VALUE.map(lambda text: ("text", text)), ENCODED.map(lambda raw: ("raw", raw)))
hostile_input = given(
    segments=st.lists(SEGMENT, min_size=4, max_size=4),
    query=st.dictionaries(st.one_of(st.sampled_from(QUERY_PARAMS), HOSTILE), VALUE, max_size=4),
    raw_query=st.one_of(st.just(""), ENCODED.map(lambda text: f"site_id={text}")),
    form=st.dictionaries(st.one_of(st.sampled_from(FORM_FIELDS), HOSTILE), VALUE, max_size=4),
    raw_form=st.one_of(st.just(""), ENCODED.map(lambda text: f"name={text}")),
    multipart=st.booleans(),
    cookie=COOKIE,
    body=JSON_BODY,
)
known_cases = example(**KNOWN_CASES)
known_nul_paths = example(
    **{
        **KNOWN_CASES,
        "segments": [("raw", "%00")] * 4,
        "multipart": True,
        "cookie": "",
        "body": NESTED_AND,
    }
)
# Shrinking would replay a failing route's requests hundreds of times; the assertion names the request instead.
walk = settings(
    deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _walk(
    cast: Cast,
    route: str,
    segments: list[tuple[str, str]],
    query: dict[str, str],
    raw_query: str,
    form: dict[str, str],
    raw_form: str,
    multipart: bool,
    cookie: str,
    body: str,
) -> None:
    parts = iter([_encode(cast.real(value)) if kind == "text" else value for kind, value in segments])
    url = PLACEHOLDER.sub(lambda _: next(parts), route)
    query_string = _urlencoded({k: cast.real(v) for k, v in query.items()}, raw_query)
    fields = {k: cast.real(v) for k, v in form.items()}
    json_body = cast.fill(body)
    form_post: dict[str, Any] = {"data": _urlencoded(fields, raw_form), "content_type": FORM}
    if multipart:
        # The test client encodes multipart bodies strictly; the surrogates travel as urlencoded forms.
        form_post = {
            "data": {
                k.encode(errors="replace").decode(): v.encode(errors="replace").decode() for k, v in fields.items()
            }
        }
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("get", f"{url}?{query_string}", {}),
        ("post", url, form_post),
        ("post", url, {"data": json_body, "content_type": "application/json"}),
    ]
    if url.startswith("/api/"):
        requests += [
            ("put", url, {"data": json_body, "content_type": "application/json"}),
            ("delete", f"{url}?{query_string}", {"data": _urlencoded(fields, raw_form), "content_type": FORM}),
        ]
    for who, client, headers in _clients(cast, url, cookie):
        for method, target, kwargs in requests:
            status = _send(client, method, target, headers=headers, **kwargs)
            sent = f"{method.upper()} {target[:300]} as {who} (Cookie: {headers.get('Cookie', '')[:100]!r})"
            assert status < 500, f"{sent} answered {status}: {kwargs!r:.300}"


@pytest.mark.parametrize("route", [route for route in ROUTES if not route.startswith("/admin/")])
@settings(walk, max_examples=4)
@hostile_input
@known_cases
@known_nul_paths
def test_no_url_answers_a_server_error_to_hostile_input(cast: Cast, route: str, **inputs: Any) -> None:
    _walk(cast, route, **inputs)


# Django's admin views, staff only: fewer random examples than the service's own pages.
@pytest.mark.parametrize("route", [route for route in ROUTES if route.startswith("/admin/")])
@settings(walk, max_examples=1)
@hostile_input
@known_cases
@known_nul_paths
def test_no_admin_url_answers_a_server_error_to_hostile_input(cast: Cast, route: str, **inputs: Any) -> None:
    _walk(cast, route, **inputs)
