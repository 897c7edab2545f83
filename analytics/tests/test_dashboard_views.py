"""The dashboard pages, their data endpoint and sharing: who sees what, and what the endpoint answers."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import Http404
from django.test import Client
from django.utils import timezone

from analytics.dashboard import sharing
from analytics.ingest import freshness, pipeline
from analytics.models import SharedLink
from analytics.tests.dashboard_fixtures import Cast, cast
from analytics.tests.factories import make_event
from spinnakr import redis_clients

__all__ = ["cast"]


def client_for(user: Any = None) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def post_query(client: Client, domain: str, payload: Any, csrf: bool = True) -> Any:
    # The dashboard page sets the CSRF cookie its script sends back.
    client.get(f"/sites/{domain}/")
    headers = {"X-CSRFToken": client.cookies["csrftoken"].value} if csrf else {}
    return client.post(
        f"/sites/{domain}/query", data=json.dumps(payload), content_type="application/json", headers=headers
    )


TOP = {"date_range": "7d", "metrics": ["visitors", "visits", "pageviews", "bounce_rate"]}


def test_it_shows_the_dashboard_to_a_member_without_redirecting(cast: Cast) -> None:
    response = client_for(cast.teammate).get("/sites/dash.example/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-metric="pageviews"' in body
    assert 'data-metric="visitors_now"' in body
    assert "/static/build/dashboard.js" in body


def test_it_checks_ownership_of_the_dashboard(cast: Cast) -> None:
    assert client_for(cast.outsider).get("/sites/dash.example/").status_code == 404


def test_it_answers_404_for_an_unknown_domain(cast: Cast) -> None:
    assert client_for(cast.owner).get("/sites/nobody.example/").status_code == 404


def test_an_anonymous_visitor_gets_404_on_a_private_dashboard(cast: Cast) -> None:
    assert client_for().get("/sites/dash.example/").status_code == 404


def test_anyone_may_view_a_public_dashboard_read_only(cast: Cast) -> None:
    sharing.set_site_public(cast.site, True)
    response = client_for().get("/sites/dash.example/")
    assert response.status_code == 200
    assert "read-only" in response.content.decode()
    assert "/sharing/" not in response.content.decode()


def test_the_data_endpoint_answers_a_batch_from_the_query_engine(cast: Cast) -> None:
    client = client_for(cast.owner)
    response = post_query(
        client,
        "dash.example",
        {
            "queries": [
                {"id": "top", "query": TOP, "compare": True},
                {"id": "now", "query": {"date_range": "now", "metrics": ["visitors"]}},
                {
                    "id": "chart",
                    "query": {"date_range": "realtime", "metrics": ["pageviews"], "dimensions": ["time:minute"]},
                },
                {"id": "recent", "recent": 20},
            ]
        },
    )
    assert response.status_code == 200
    results = {entry["id"]: entry for entry in response.json()["results"]}
    assert results["top"]["result"]["results"][0]["metrics"] == [0, 0, 0, 0]
    assert results["top"]["result"]["results"][0]["comparison"]["metrics"] == [0, 0, 0, 0]
    assert results["now"]["result"]["results"][0]["metrics"] == [0]
    assert results["chart"]["result"]["query"]["dimensions"] == ["time:minute"]
    assert results["recent"]["result"] == {"events": []}


def test_an_invalid_query_answers_its_own_error_and_leaves_the_others(cast: Cast) -> None:
    response = post_query(
        client_for(cast.owner),
        "dash.example",
        {
            "queries": [
                {"id": "bad", "query": {"date_range": "7d", "metrics": ["nonsense"]}},
                {"id": "ok", "query": TOP},
            ]
        },
    )
    assert response.status_code == 200
    results = {entry["id"]: entry for entry in response.json()["results"]}
    assert "nonsense" in results["bad"]["error"]
    assert "result" in results["ok"]


def test_a_single_v2_body_is_answered_as_the_engine_would(cast: Cast) -> None:
    response = post_query(client_for(cast.owner), "dash.example", TOP)
    assert response.status_code == 200
    assert response.json()["query"]["metrics"] == TOP["metrics"]


def test_the_data_endpoint_rejects_malformed_json_with_a_json_error(cast: Cast) -> None:
    client = client_for(cast.owner)
    page = client.get("/sites/dash.example/")
    response = client.post(
        "/sites/dash.example/query",
        data=b"{not json",
        content_type="application/json",
        HTTP_X_CSRFTOKEN=page.cookies["csrftoken"].value,
    )
    assert response.status_code == 400
    assert response.json() == {"error": "the body is not valid JSON"}


def test_the_data_endpoint_limits_the_batch(cast: Cast) -> None:
    response = post_query(
        client_for(cast.owner), "dash.example", {"queries": [{"id": str(i), "query": TOP} for i in range(31)]}
    )
    assert response.status_code == 400
    assert "at most 30" in response.json()["error"]


def test_the_data_endpoint_requires_the_csrf_token(cast: Cast) -> None:
    response = post_query(client_for(cast.owner), "dash.example", TOP, csrf=False)
    assert response.status_code == 403


def test_it_checks_ownership_of_the_data_endpoint(cast: Cast) -> None:
    client = client_for(cast.outsider)
    client.get("/sites/elsewhere.example/")
    response = client.post(
        "/sites/dash.example/query",
        data=json.dumps(TOP),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_the_overview_lists_the_sites_of_the_account_only(cast: Cast) -> None:
    response = client_for(cast.owner).get("/sites/")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-domain="dash.example"' in body
    assert 'data-domain="blog.dash.example"' in body
    assert "elsewhere.example" not in body


def test_the_overview_data_covers_each_site_of_the_account(cast: Cast) -> None:
    response = client_for(cast.teammate).get("/sites/summary.json")
    assert response.status_code == 200
    sites = {row["domain"]: row for row in response.json()["sites"]}
    assert set(sites) == {"dash.example", "blog.dash.example"}
    assert sites["dash.example"]["visitors_now"] == 0
    assert len(sites["dash.example"]["series"]) >= 24
    assert {point["visitors"] for point in sites["dash.example"]["series"]} == {0}


def test_the_overview_asks_an_anonymous_visitor_to_log_in(cast: Cast) -> None:
    response = client_for().get("/sites/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_shared_link_without_password_shows_the_dashboard(cast: Cast) -> None:
    link = sharing.create_shared_link(cast.site, "Board")
    client = client_for()
    response = client.get(f"/share/{link.slug}/")
    assert response.status_code == 200
    assert 'data-metric="pageviews"' in response.content.decode()
    # The session now opens the site's dashboard and its data, read-only.
    assert client.get("/sites/dash.example/").status_code == 200
    assert client.get("/sites/blog.dash.example/").status_code == 404


def test_a_shared_link_with_a_password_asks_for_it(cast: Cast) -> None:
    link = sharing.create_shared_link(cast.site, "Investors", "open sesame 123")
    client = client_for()
    form = client.get(f"/share/{link.slug}/")
    assert form.status_code == 200
    assert 'name="password"' in form.content.decode()
    assert client.get("/sites/dash.example/").status_code == 404
    token = form.cookies["csrftoken"].value
    wrong = client.post(f"/share/{link.slug}/", {"password": "nope", "csrfmiddlewaretoken": token})
    assert wrong.status_code == 403
    right = client.post(f"/share/{link.slug}/", {"password": "open sesame 123", "csrfmiddlewaretoken": token})
    assert right.status_code == 200
    assert 'data-metric="pageviews"' in right.content.decode()
    assert client.get("/sites/dash.example/").status_code == 200


def test_deleting_a_shared_link_revokes_it_at_once(cast: Cast) -> None:
    link = sharing.create_shared_link(cast.site, "Agency")
    client = client_for()
    client.get(f"/share/{link.slug}/")
    sharing.delete_shared_link(cast.site, link.slug)
    assert client.get("/sites/dash.example/").status_code == 404
    assert client.get(f"/share/{link.slug}/").status_code == 404


def test_setting_a_password_later_locks_out_earlier_sessions(cast: Cast) -> None:
    link = sharing.create_shared_link(cast.site, "Press")
    client = client_for()
    client.get(f"/share/{link.slug}/")
    link.set_password("a new secret 77")
    link.save()
    assert client.get("/sites/dash.example/").status_code == 404


def test_an_unknown_shared_link_is_404(cast: Cast) -> None:
    assert client_for().get("/share/not-a-real-slug/").status_code == 404


def test_an_admin_creates_and_deletes_shared_links(cast: Cast) -> None:
    client = client_for(cast.owner)
    page = client.get("/sites/dash.example/sharing/")
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    created = client.post(
        "/sites/dash.example/sharing/",
        {"action": "create", "name": "Board", "password": "pw-for-board-1", "csrfmiddlewaretoken": token},
    )
    assert created.status_code == 200
    link = SharedLink.objects.get(site=cast.site)
    assert f"/share/{link.slug}/" in created.content.decode()
    assert link.password_hash.startswith("argon2")
    client.post("/sites/dash.example/sharing/", {"action": "delete", "slug": link.slug, "csrfmiddlewaretoken": token})
    assert not SharedLink.objects.filter(site=cast.site).exists()


def test_an_admin_makes_the_dashboard_public(cast: Cast) -> None:
    client = client_for(cast.owner)
    token = client.get("/sites/dash.example/sharing/").cookies["csrftoken"].value
    client.post("/sites/dash.example/sharing/", {"action": "public", "public": "on", "csrfmiddlewaretoken": token})
    cast.site.refresh_from_db()
    assert cast.site.public


def test_a_viewer_may_not_manage_sharing(cast: Cast) -> None:
    assert client_for(cast.teammate).get("/sites/dash.example/sharing/").status_code == 403


def test_it_checks_ownership_of_the_sharing_page(cast: Cast) -> None:
    assert client_for(cast.outsider).get("/sites/dash.example/sharing/").status_code == 404


def test_a_suspended_account_hides_its_public_dashboard(cast: Cast) -> None:
    sharing.set_site_public(cast.site, True)
    cast.account.suspended = True
    cast.account.save()
    assert client_for().get("/sites/dash.example/").status_code == 404


@pytest.fixture
def ingested(cast: Cast, data_redis: Any, clean_events: None) -> Cast:
    """Four events of the last minutes, ingested by the worker's own code (rollups and raw store)."""
    now = timezone.now() - dt.timedelta(minutes=2)
    events = [
        make_event(cast.site, now, visitor=1, pathname="/pricing"),
        make_event(cast.site, now + dt.timedelta(seconds=5), visitor=2, pathname="/pricing", country="FR"),
        make_event(cast.site, now + dt.timedelta(seconds=9), visitor=2, pathname="/blog", country="FR"),
        make_event(
            cast.site, now + dt.timedelta(seconds=12), visitor=2, name="Signup", pathname="/blog", props={"plan": "pro"}
        ),
    ]
    pipeline.ingest(uuid.uuid4().hex, events)
    return cast


def test_the_data_endpoint_answers_with_the_sites_own_events(ingested: Cast) -> None:
    base = {"date_range": "day"}
    response = post_query(
        client_for(ingested.owner),
        "dash.example",
        {
            "queries": [
                {"id": "top", "query": {**base, "metrics": ["visitors", "visits", "pageviews"]}},
                {"id": "now", "query": {"date_range": "now", "metrics": ["visitors"]}},
                {"id": "pages", "query": {**base, "metrics": ["visitors"], "dimensions": ["event:page"]}},
                {"id": "props", "props": True, "query": {**base, "metrics": ["visitors", "events"]}},
                {
                    "id": "filtered",
                    "query": {**base, "metrics": ["pageviews"], "filters": [["is", "visit:country", ["FR"]]]},
                },
                {"id": "recent", "recent": 3},
            ]
        },
    )
    results = {entry["id"]: entry["result"] for entry in response.json()["results"]}
    assert results["top"]["results"][0]["metrics"] == [2, 2, 3]
    assert results["now"]["results"][0]["metrics"] == [2]
    assert [(r["dimensions"][0], r["metrics"][0]) for r in results["pages"]["results"]] == [
        ("/pricing", 2),
        ("/blog", 1),
    ]
    assert [(r["dimensions"], r["metrics"]) for r in results["props"]["props"]["plan"]["results"]] == [
        (["pro"], [1, 1])
    ]
    assert results["filtered"]["results"][0]["metrics"] == [2]
    assert [(e["name"], e["pathname"]) for e in results["recent"]["events"]] == [
        ("Signup", "/blog"),
        ("pageview", "/blog"),
        ("pageview", "/pricing"),
    ]
    assert results["recent"]["events"][0]["props"] == {"plan": "pro"}


def test_the_overview_data_counts_the_last_24_hours(ingested: Cast) -> None:
    sites = {row["domain"]: row for row in client_for(ingested.teammate).get("/sites/summary.json").json()["sites"]}
    assert sites["dash.example"]["visitors_now"] == 2
    assert sites["dash.example"]["totals"] == [2, 3]
    assert sum(point["visitors"] for point in sites["dash.example"]["series"]) == 2
    assert sites["blog.dash.example"]["totals"] == [0, 0]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"metrics": ["visitors"], "date_range": ["0001-01-01", "9999-12-31"]},
            "date_range: 0001-01-01 is outside the days a query may name (1970-01-01 to 2999-12-31)",
        ),
        (
            {"metrics": ["visitors"], "date_range": "7d", "filters": [["is", "event:page", ["\x00"]]]},
            "filters[0][2][0]: holds a NUL character",
        ),
        (
            {"queries": [{"id": "a", "query": {"metrics": ["visitors"], "date_range": ["\ud800", "2026-01-01"]}}]},
            "queries[0].query.date_range[0]: holds an unpaired surrogate",
        ),
    ],
)
def test_the_data_endpoint_answers_400_for_input_no_query_can_hold(cast: Cast, body: Any, error: str) -> None:
    response = post_query(client_for(cast.owner), "dash.example", body)
    assert response.status_code == 400
    assert response.json() == {"error": error}


def test_the_data_endpoint_answers_400_for_json_nested_a_thousand_levels_deep(cast: Cast) -> None:
    client = client_for(cast.owner)
    client.get("/sites/dash.example/")
    nested = '["and", [' * 1000 + '["is", "event:page", ["/"]]' + "]]" * 1000
    response = client.post(
        "/sites/dash.example/query",
        data=f'{{"metrics": ["visitors"], "date_range": "7d", "filters": [{nested}]}}',
        content_type="application/json",
        headers={"X-CSRFToken": client.cookies["csrftoken"].value},
    )
    assert response.status_code == 400
    assert response.json() == {"error": "body: nested more than 64 levels deep"}


@pytest.mark.parametrize("path", ["/sites/%00/", "/sites/%00/goals/", "/sites/%00/sharing/", "/share/%00/"])
def test_a_nul_in_a_dashboard_path_is_404_even_anonymously(cast: Cast, path: str) -> None:
    assert client_for().get(path).status_code == 404
    assert client_for(cast.owner).get(path).status_code == 404


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/sites/dash.example/goals/", {"goal_type": "event", "value": "Sign\x00up"}),
        ("/sites/dash.example/goals/", {"goal_type": "page", "value": "/\x00"}),
        ("/sites/dash.example/sharing/", {"action": "create", "name": "Team\x00"}),
        ("/sites/dash.example/sharing/", {"action": "delete", "slug": "\x00"}),
    ],
)
def test_goal_and_shared_link_forms_answer_400_for_a_nul(cast: Cast, path: str, form: dict[str, str]) -> None:
    client = Client()
    client.force_login(cast.owner)
    response = client.post(path, form)
    assert response.status_code == 400
    assert "the form field holds a NUL character" in response.content.decode()
    assert not cast.site.goals.exists()
    assert not SharedLink.objects.filter(site=cast.site).exists()


@pytest.mark.parametrize("text", ["dash.example\x00", "\ud800"])
def test_dashboard_access_and_shared_links_are_404_for_text_no_domain_holds(cast: Cast, text: str) -> None:
    # The live WebSocket asks dashboard_access directly, without the HTTP middleware in front.
    with pytest.raises(Http404):
        sharing.dashboard_access(AnonymousUser(), {}, text)
    with pytest.raises(Http404):
        sharing.link_for_slug(text)


def test_the_dashboard_says_when_the_sites_events_were_last_applied_and_their_lag(cast: Cast) -> None:
    applied = int(timezone.now().timestamp() * 1000) - 120_000
    redis_clients.data().hset(freshness.KEY, str(cast.site.pk), f"{applied} {applied - 800}")
    try:
        body = client_for(cast.teammate).get("/sites/dash.example/").content.decode()
    finally:
        freshness.forget([cast.site.pk])

    assert f'data-applied="{applied}" data-lag="800"' in body
    assert "updated 2\xa0minutes ago · lag 0.8 s" in body


def test_a_site_without_applied_events_says_so(cast: Cast) -> None:
    freshness.forget([cast.site.pk])

    body = client_for(cast.teammate).get("/sites/dash.example/").content.decode()

    assert 'data-state="none"' in body
    assert "no events applied yet" in body
