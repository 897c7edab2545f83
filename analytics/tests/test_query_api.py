"""The Stats API over HTTP: auth, scopes and tenancy on every endpoint, v2 and v1 shapes, CSV, rate limit."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zipfile
from typing import Any

import pytest
from django.test import Client
from django_redis import get_redis_connection

from accounts.apikeys import create_api_key
from analytics.models import APIRateLimit, Goal
from analytics.tests.query_support import add_events, make_cast

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("data_redis")]

DAY = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
DATE = DAY.date().isoformat()

# (method, path, query string or JSON body); "{domain}" is replaced by the site's domain.
ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("post", "/api/v2/query", {"site_id": "{domain}", "metrics": ["visitors"], "date_range": "7d"}),
    ("get", "/api/v1/stats/realtime/visitors", {"site_id": "{domain}"}),
    ("get", "/api/v1/stats/aggregate", {"site_id": "{domain}", "period": "7d"}),
    ("get", "/api/v1/stats/timeseries", {"site_id": "{domain}", "period": "7d"}),
    ("get", "/api/v1/stats/breakdown", {"site_id": "{domain}", "period": "7d", "property": "event:page"}),
    ("get", "/api/v1/sites/{domain}/realtime", {}),
    ("get", "/api/v1/sites/{domain}/export", {"period": "7d"}),
    ("get", "/api/v1/sites/goals", {"site_id": "{domain}"}),
    ("put", "/api/v1/sites/goals", {"site_id": "{domain}", "goal_type": "event", "event_name": "Signup"}),
    ("delete", "/api/v1/sites/goals/{goal}", {"site_id": "{domain}"}),
]
IDS = [f"{m.upper()} {p}" for m, p, _ in ENDPOINTS]
WRITE = {"put", "delete"}


@pytest.fixture
def cast() -> dict[str, Any]:
    # Key ids restart with each test database; their hourly counters must not carry over.
    redis_cache = get_redis_connection("default")
    for name in redis_cache.scan_iter("ratelimit:api:*"):
        redis_cache.delete(name)
    cast = make_cast()
    site = cast["site"]
    add_events(
        site,
        [
            {"visitor": 1, "ts": DAY + dt.timedelta(hours=9), "pathname": "/", "referrer_source": "Google"},
            {"visitor": 1, "ts": DAY + dt.timedelta(hours=9, minutes=3), "pathname": "/pricing"},
            {"visitor": 2, "ts": DAY + dt.timedelta(hours=11), "pathname": "/", "country": "US"},
            {"visitor": 2, "ts": DAY + dt.timedelta(hours=11, minutes=1), "name": "Signup", "pathname": "/"},
        ],
    )
    cast["goal"] = Goal.objects.create(site=site, display_name="Signup", event_name="Signup")
    cast["other_goal"] = Goal.objects.create(site=cast["other_site"], display_name="Other", event_name="Other")
    _, cast["key"] = create_api_key(cast["account"], "stats", ["stats:read", "sites:write"])
    _, cast["read_key"] = create_api_key(cast["account"], "read only", ["stats:read"])
    _, cast["events_key"] = create_api_key(cast["account"], "events", ["events:write"])
    _, cast["other_key"] = create_api_key(cast["other_account"], "other", ["stats:read", "sites:write"])
    return cast


def call(
    client: Client,
    method: str,
    path: str,
    data: dict[str, Any],
    *,
    domain: str,
    goal: Any,
    key: str | None = None,
    accept: str = "application/json",
    slash: bool = False,
) -> Any:
    path = path.replace("{domain}", domain).replace("{goal}", str(goal.pk))
    payload = json.loads(json.dumps(data).replace("{domain}", domain))
    if slash:
        path += "/"
    headers: dict[str, str] = {"HTTP_ACCEPT": accept}
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    if method == "get":
        return client.get(path, payload, **headers)  # type: ignore[arg-type]
    return getattr(client, method)(path, json.dumps(payload), content_type="application/json", **headers)


def send(client: Client, cast: dict[str, Any], index: int, **kwargs: Any) -> Any:
    method, path, data = ENDPOINTS[index]
    kwargs.setdefault("domain", cast["site"].domain)
    kwargs.setdefault("goal", cast["goal"])
    return call(client, method, path, data, **kwargs)


@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=IDS)
def test_every_endpoint_answers_401_without_a_key(client: Client, cast: dict[str, Any], index: int) -> None:
    response = send(client, cast, index)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "error" in response.json()


@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=IDS)
def test_every_endpoint_answers_401_for_an_unknown_key(client: Client, cast: dict[str, Any], index: int) -> None:
    response = send(client, cast, index, key="spk_AAAAAAAAAAAA_" + "x" * 30)
    assert response.status_code == 401
    assert "error" in response.json()


@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=IDS)
def test_every_endpoint_answers_403_without_the_scope(client: Client, cast: dict[str, Any], index: int) -> None:
    response = send(client, cast, index, key=cast["events_key"])
    assert response.status_code == 403
    assert "scope" in response.json()["error"]


@pytest.mark.parametrize(
    "index",
    [i for i, e in enumerate(ENDPOINTS) if e[0] in WRITE],
    ids=[IDS[i] for i, e in enumerate(ENDPOINTS) if e[0] in WRITE],
)
def test_writes_answer_403_for_a_read_only_key(client: Client, cast: dict[str, Any], index: int) -> None:
    assert send(client, cast, index, key=cast["read_key"]).status_code == 403


@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=IDS)
def test_every_endpoint_answers_404_for_another_accounts_site(client: Client, cast: dict[str, Any], index: int) -> None:
    response = send(client, cast, index, key=cast["key"], domain=cast["other_site"].domain, goal=cast["other_goal"])
    assert response.status_code == 404
    assert "error" in response.json()


@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=IDS)
def test_every_endpoint_answers_an_outsider_session_404(client: Client, cast: dict[str, Any], index: int) -> None:
    client.force_login(cast["outsider"])
    client.handler.enforce_csrf_checks = False
    assert send(client, cast, index).status_code == 404


@pytest.mark.parametrize("index", range(len(ENDPOINTS)), ids=IDS)
@pytest.mark.parametrize("slash", [False, True])
def test_every_endpoint_answers_as_written_with_or_without_a_slash(
    client: Client, cast: dict[str, Any], index: int, slash: bool
) -> None:
    response = send(client, cast, index, key=cast["key"], slash=slash)
    assert response.status_code == 200, response.content
    assert response["X-RateLimit-Limit"] == "600"


@pytest.mark.parametrize(
    "index",
    [i for i, e in enumerate(ENDPOINTS) if e[0] not in WRITE],
    ids=[IDS[i] for i, e in enumerate(ENDPOINTS) if e[0] not in WRITE],
)
def test_a_viewer_reads_every_endpoint_with_a_session(client: Client, cast: dict[str, Any], index: int) -> None:
    client.force_login(cast["teammate"])
    assert send(client, cast, index).status_code == 200


@pytest.mark.parametrize(
    "index",
    [i for i, e in enumerate(ENDPOINTS) if e[0] in WRITE],
    ids=[IDS[i] for i, e in enumerate(ENDPOINTS) if e[0] in WRITE],
)
def test_a_viewer_cannot_change_goals(client: Client, cast: dict[str, Any], index: int) -> None:
    client.force_login(cast["teammate"])
    assert send(client, cast, index).status_code == 403


def test_v2_answers_in_plausibles_shape(client: Client, cast: dict[str, Any]) -> None:
    body = {
        "site_id": cast["site"].domain,
        "metrics": ["visitors", "pageviews", "bounce_rate"],
        "date_range": [DATE, DATE],
        "dimensions": ["event:page"],
    }
    response = client.post(
        "/api/v2/query", body, content_type="application/json", headers={"Authorization": f"Bearer {cast['key']}"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "metrics: 'bounce_rate' cannot be broken down by the event dimension 'event:page'"
    }
    body["metrics"] = ["visitors", "pageviews"]
    response = client.post(
        "/api/v2/query", body, content_type="application/json", headers={"Authorization": f"Bearer {cast['key']}"}
    )
    data = response.json()
    assert data["results"] == [
        {"metrics": [2, 2], "dimensions": ["/"]},
        {"metrics": [1, 1], "dimensions": ["/pricing"]},
    ]
    assert data["query"]["site_id"] == cast["site"].domain
    assert data["query"]["dimensions"] == ["event:page"]


def test_v2_answers_400_naming_a_missing_site_id(client: Client, cast: dict[str, Any]) -> None:
    response = client.post(
        "/api/v2/query",
        {"metrics": ["visitors"]},
        content_type="application/json",
        headers={"Authorization": f"Bearer {cast['key']}"},
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("site_id:")


def test_v2_answers_400_for_a_body_that_is_not_json(client: Client, cast: dict[str, Any]) -> None:
    response = client.post(
        "/api/v2/query", "{nope", content_type="application/json", headers={"Authorization": f"Bearer {cast['key']}"}
    )
    assert response.status_code == 400
    assert "error" in response.json()


def test_any_query_answers_csv(client: Client, cast: dict[str, Any]) -> None:
    body = {
        "site_id": cast["site"].domain,
        "metrics": ["visitors", "pageviews"],
        "date_range": [DATE, DATE],
        "dimensions": ["event:page"],
    }
    response = client.post(
        "/api/v2/query",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {cast['key']}"},
        HTTP_ACCEPT="text/csv",
    )
    assert response["Content-Type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(response.content.decode()))) == [
        ["event:page", "visitors", "pageviews"],
        ["/", "2", "2"],
        ["/pricing", "1", "1"],
    ]


def test_v1_aggregate_timeseries_and_breakdown_answer_in_v1_shapes(client: Client, cast: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {cast['key']}"}
    common = {"site_id": cast["site"].domain, "period": "custom", "date": f"{DATE},{DATE}"}
    aggregate = client.get(
        "/api/v1/stats/aggregate", {**common, "metrics": "visitors,visits,bounce_rate"}, headers=auth
    ).json()
    assert aggregate == {"results": {"visitors": {"value": 2}, "visits": {"value": 2}, "bounce_rate": {"value": 0}}}
    series = client.get("/api/v1/stats/timeseries", {**common, "metrics": "pageviews"}, headers=auth).json()
    assert series == {"results": [{"date": DATE, "pageviews": 3}]}
    breakdown = client.get(
        "/api/v1/stats/breakdown",
        {**common, "property": "visit:country", "filters": "event:page==/pricing|/", "limit": "1"},
        headers=auth,
    ).json()
    assert breakdown == {"results": [{"country": "", "visitors": 1}]}


def test_v1_filters_take_wildcards(client: Client, cast: dict[str, Any]) -> None:
    params = {
        "site_id": cast["site"].domain,
        "period": "custom",
        "date": f"{DATE},{DATE}",
        "filters": "event:page==/pri*",
        "metrics": "pageviews",
    }
    data = client.get("/api/v1/stats/aggregate", params, headers={"Authorization": f"Bearer {cast['key']}"}).json()
    assert data == {"results": {"pageviews": {"value": 1}}}


def test_goals_are_created_listed_used_and_deleted(client: Client, cast: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {cast['key']}"}
    domain = cast["site"].domain
    created = client.put(
        "/api/v1/sites/goals",
        json.dumps({"site_id": domain, "goal_type": "page", "page_path": "/pri**"}),
        content_type="application/json",
        headers=auth,
    ).json()
    assert created["display_name"] == "Visit /pri**"
    again = client.put(
        "/api/v1/sites/goals",
        json.dumps({"site_id": domain, "goal_type": "page", "page_path": "/pri**"}),
        content_type="application/json",
        headers=auth,
    ).json()
    assert again["id"] == created["id"]
    listed = client.get("/api/v1/sites/goals", {"site_id": domain}, headers=auth).json()
    assert [g["display_name"] for g in listed["goals"]] == ["Signup", "Visit /pri**"]
    body = {
        "site_id": domain,
        "metrics": ["visitors", "conversion_rate"],
        "date_range": [DATE, DATE],
        "dimensions": ["event:goal"],
    }
    answer = client.post("/api/v2/query", body, content_type="application/json", headers=auth).json()
    assert answer["results"] == [
        {"metrics": [1, 50.0], "dimensions": ["Signup"]},
        {"metrics": [1, 50.0], "dimensions": ["Visit /pri**"]},
    ]
    deleted = client.delete(
        f"/api/v1/sites/goals/{created['id']}",
        json.dumps({"site_id": domain}),
        content_type="application/json",
        headers=auth,
    )
    assert deleted.json() == {"deleted": True}
    assert not Goal.objects.filter(pk=created["id"]).exists()


def test_a_goal_needs_a_valid_type(client: Client, cast: dict[str, Any]) -> None:
    response = client.put(
        "/api/v1/sites/goals",
        json.dumps({"site_id": cast["site"].domain, "goal_type": "click"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {cast['key']}"},
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("goal_type:")


def test_the_export_is_a_zip_of_csvs(client: Client, cast: dict[str, Any]) -> None:
    response = client.get(
        f"/api/v1/sites/{cast['site'].domain}/export",
        {"period": "custom", "date": f"{DATE},{DATE}"},
        headers={"Authorization": f"Bearer {cast['key']}"},
    )
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert {"visitors.csv", "pages.csv", "sources.csv", "countries.csv"} <= set(archive.namelist())
    pages = list(csv.reader(io.StringIO(archive.read("pages.csv").decode())))
    assert pages == [["page", "visitors", "pageviews"], ["/", "2", "2"], ["/pricing", "1", "1"]]


def test_the_rate_limit_answers_429_with_headers(client: Client, cast: dict[str, Any]) -> None:
    APIRateLimit.objects.create(account=cast["account"], requests_per_hour=2)
    auth = {"Authorization": f"Bearer {cast['key']}"}
    params = {"site_id": cast["site"].domain}
    first = client.get("/api/v1/stats/realtime/visitors", params, headers=auth)
    second = client.get("/api/v1/stats/realtime/visitors", params, headers=auth)
    third = client.get("/api/v1/stats/realtime/visitors", params, headers=auth)
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert [first["X-RateLimit-Remaining"], second["X-RateLimit-Remaining"], third["X-RateLimit-Remaining"]] == [
        "1",
        "0",
        "0",
    ]
    assert third["X-RateLimit-Limit"] == "2"
    assert int(third["Retry-After"]) >= 1
    assert "error" in third.json()


def post_v2(client: Client, cast: dict[str, Any], body: str) -> Any:
    headers = {"Authorization": f"Bearer {cast['key']}"}
    return client.post("/api/v2/query", body, content_type="application/json", headers=headers)


def test_v2_answers_400_for_days_outside_the_supported_range(client: Client, cast: dict[str, Any]) -> None:
    body = {"site_id": cast["site"].domain, "metrics": ["visitors"], "date_range": ["0001-01-01", "9999-12-31"]}
    response = post_v2(client, cast, json.dumps(body))
    assert response.status_code == 400
    assert response.json()["error"].startswith("date_range: 0001-01-01 is outside the days a query may name")


def test_v2_answers_400_for_json_nested_a_thousand_levels_deep(client: Client, cast: dict[str, Any]) -> None:
    response = post_v2(client, cast, '{"site_id": ' + "[" * 1000 + "]" * 1000 + "}")
    assert response.status_code == 400
    assert response.json() == {"error": "body: nested more than 64 levels deep"}


def test_v2_answers_400_for_a_thousand_nested_and_filters(client: Client, cast: dict[str, Any]) -> None:
    nested = '["and", [' * 1000 + '["is", "event:page", ["/"]]' + "]]" * 1000
    body = f'{{"site_id": "{cast["site"].domain}", "metrics": ["visitors"], "date_range": "7d", "filters": [{nested}]}}'
    response = post_v2(client, cast, body)
    assert response.status_code == 400
    assert response.json() == {"error": "body: nested more than 64 levels deep"}


@pytest.mark.parametrize(
    ("clause", "message"),
    [
        ("\\u0000", "filters[0][2][0]: holds a NUL character"),
        ("\\ud800", "filters[0][2][0]: holds an unpaired surrogate"),
    ],
)
def test_v2_answers_400_for_text_postgresql_cannot_hold(
    client: Client, cast: dict[str, Any], clause: str, message: str
) -> None:
    body = (
        f'{{"site_id": "{cast["site"].domain}", "metrics": ["visitors"], "date_range": "7d",'
        f' "filters": [["is", "event:page", ["{clause}"]]]}}'
    )
    response = post_v2(client, cast, body)
    assert response.status_code == 400
    assert response.json() == {"error": message}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sites/{domain}/export?period=custom&date=0001-01-01,9999-12-31",
        "/api/v1/sites/{domain}/export?period=month&date=9999-12-31",
        "/api/v1/stats/aggregate?site_id={domain}&period=12mo&date=9999-12-31",
        "/api/v1/stats/timeseries?site_id={domain}&period=30d&date=0001-01-01",
    ],
)
def test_v1_and_the_export_answer_400_for_days_outside_the_supported_range(
    client: Client, cast: dict[str, Any], path: str
) -> None:
    headers = {"Authorization": f"Bearer {cast['key']}"}
    response = client.get(path.format(domain=cast["site"].domain), headers=headers)
    assert response.status_code == 400
    assert "is outside the days a query may name (1970-01-01 to 2999-12-31)" in response.json()["error"]


def test_a_nul_in_the_query_string_answers_400_in_json(client: Client, cast: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {cast['key']}"}
    response = client.get(
        f"/api/v1/stats/aggregate?site_id={cast['site'].domain}&filters=event:page%3D%3D%00", headers=headers
    )
    assert response.status_code == 400
    assert response.json() == {"error": "filters: the query string parameter holds a NUL character"}
