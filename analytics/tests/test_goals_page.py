"""The goals page: members read a site's goals, admins and owners add and delete them."""

from __future__ import annotations

from typing import Any

from django.test import Client

from analytics.models import Goal
from analytics.query.goals import create_goal
from analytics.tests.dashboard_fixtures import Cast, cast

__all__ = ["cast"]
URL = "/sites/dash.example/goals/"


def client_for(user: Any = None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_an_owner_adds_an_event_goal_and_a_page_goal(cast: Cast) -> None:
    client = client_for(cast.owner)

    first = client.post(URL, {"action": "create", "goal_type": "event", "value": "Signup", "display_name": ""})
    second = client.post(
        URL, {"action": "create", "goal_type": "page", "value": "/pricing/**", "display_name": "Pricing"}
    )

    assert first.status_code == 302
    assert second.status_code == 302
    goals = {goal.display_name: (goal.event_name, goal.page_path) for goal in Goal.objects.filter(site=cast.site)}
    assert goals == {"Signup": ("Signup", ""), "Pricing": ("", "/pricing/**")}
    page = client.get(URL).content.decode()
    assert "/pricing/**" in page
    assert "Add a goal" in page


def test_an_invalid_goal_is_refused_with_the_reason(cast: Cast) -> None:
    response = client_for(cast.owner).post(URL, {"action": "create", "goal_type": "page", "value": "pricing"})

    assert response.status_code == 400
    assert "page_path: is required for a page goal and must start with &#x27;/&#x27;" in response.content.decode()
    assert not Goal.objects.filter(site=cast.site).exists()


def test_an_owner_deletes_a_goal(cast: Cast) -> None:
    goal, _ = create_goal(cast.site, "event", event_name="Signup")

    response = client_for(cast.owner).post(URL, {"action": "delete", "goal_id": str(goal.pk)})

    assert response.status_code == 302
    assert not Goal.objects.filter(pk=goal.pk).exists()


def test_a_viewer_reads_the_goals_but_cannot_change_them(cast: Cast) -> None:
    create_goal(cast.site, "event", event_name="Signup")
    client = client_for(cast.teammate)

    page = client.get(URL)
    refused = client.post(URL, {"action": "create", "goal_type": "event", "value": "Purchase"})

    assert page.status_code == 200
    assert "Signup" in page.content.decode()
    assert "Add a goal" not in page.content.decode()
    assert refused.status_code == 403
    assert list(Goal.objects.filter(site=cast.site).values_list("event_name", flat=True)) == ["Signup"]


def test_it_checks_ownership(cast: Cast) -> None:
    goal, _ = create_goal(cast.site, "event", event_name="Signup")
    client = client_for(cast.outsider)

    page = client.get(URL)
    delete = client.post(URL, {"action": "delete", "goal_id": str(goal.pk)})

    assert page.status_code == 404
    assert delete.status_code == 404
    assert Goal.objects.filter(pk=goal.pk).exists()


def test_a_visitor_who_is_not_logged_in_is_sent_to_the_login_page(cast: Cast) -> None:
    response = client_for().get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
